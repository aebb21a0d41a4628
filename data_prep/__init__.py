"""Offline data preparation: SA-1B and COCO-format sets to WebDataset shards; download checks."""
