"""Command-line benchmarks: each prints a paper-shaped table and writes JSON."""
