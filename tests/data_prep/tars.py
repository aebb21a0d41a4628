"""Reading SA-1B-format tars and shard folders in the data_prep tests."""
from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import cv2
import numpy as np


def read_tar(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def samples_of(path: Path) -> dict[str, tuple[np.ndarray, dict]]:
    """key -> (RGB image, json record) of one tar."""
    members = read_tar(path)
    out: dict[str, dict] = {}
    for name, data in members:
        key, ext = name.split(".", 1)
        out.setdefault(key, {})[ext] = data
    res = {}
    for key, d in out.items():
        img = cv2.imdecode(np.frombuffer(d["jpg"], np.uint8), cv2.IMREAD_COLOR)
        res[key] = (img, json.loads(d["json"]))
    return res


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def shard_shas(out: Path) -> dict[str, str]:
    return {p.name: sha(p) for p in sorted(out.glob("*.tar"))}
