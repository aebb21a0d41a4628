"""litesam_pl.inference.postprocess.encode_rle: the device run-length scan, compressed through ``data.rle``."""
from __future__ import annotations

import numpy as np
import torch
from pycocotools import mask as mask_utils

from litesam_pl.data.rle import decode_rle, encode_mask
from litesam_pl.inference.postprocess import encode_rle


def test_encode_rle_compressed_and_uncompressed():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(4, 13, 21, generator=g) > 0.6
    masks[0] = False
    masks[1] = True
    rles = encode_rle(masks)
    for m, rle in zip(masks.numpy(), rles):
        assert rle == encode_mask(m)  # {"size": [h, w], "counts": str}, the JSON form
        assert list(rle) == ["size", "counts"] and isinstance(rle["counts"], str)
        np.testing.assert_array_equal(decode_rle(rle), m)
    raw = encode_rle(masks, compressed=False)
    for m, rle in zip(masks.numpy(), raw):
        assert isinstance(rle["counts"], list) and rle["size"] == [13, 21]
        coco = mask_utils.frPyObjects(rle, 13, 21)
        np.testing.assert_array_equal(mask_utils.decode(coco).astype(bool), m)
    assert encode_rle(torch.zeros(0, 5, 5, dtype=torch.bool)) == []
