"""Helpers shared by the data_prep tools: deterministic tars, atomic writes, hashing, manifests."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

# Fixed tar header fields so the same members always give byte-identical tars.
TAR_MTIME = 1_600_000_000  # 2020-09-13, an arbitrary fixed time
TMP_SUFFIX = ".tmp"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = TAR_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def tar_bytes(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A POSIX (ustar) tar holding ``members`` in the given order, with fixed mtime/uid/gid/mode."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            _add(tar, name, data)
    return buf.getvalue()


class ShardWriter:
    """Streams ``(key, jpg, json)`` samples into ``<path>.tmp`` (same bytes as ``tar_bytes``); ``close`` renames it
    to ``path`` and returns ``{"url", "samples", "bytes", "sha256"}``. Memory stays at one sample."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + TMP_SUFFIX)
        self._file = open(self.tmp, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)
        self.samples = 0

    def write(self, key: str, jpg: bytes, js: bytes) -> None:
        for name, data in sample_members([(key, jpg, js)]):
            _add(self._tar, name, data)
        self.samples += 1

    def close(self) -> dict:
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        info = {"url": self.path.name, "samples": self.samples, "bytes": self.tmp.stat().st_size,
                "sha256": sha256_file(self.tmp)}
        os.replace(self.tmp, self.path)
        return info

    def abort(self) -> None:
        """Close and delete the partial file."""
        try:
            self._tar.close()
            self._file.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def sample_members(samples: Sequence[tuple[str, bytes, bytes]]) -> list[tuple[str, bytes]]:
    """``(key, jpg, json)`` samples -> tar members ``<key>.jpg``, ``<key>.json`` (jpg first, keys in order)."""
    members: list[tuple[str, bytes]] = []
    for key, jpg, js in samples:
        if "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} must not contain '.' or '/' (webdataset splits keys at the first dot)")
        members += [(f"{key}.jpg", jpg), (f"{key}.json", js)]
    return members


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via ``<path>.tmp`` + ``os.replace``: the file appears only once complete."""
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def dump_json(obj) -> bytes:
    """Compact, key-order-preserving JSON bytes (deterministic for the same object)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("utf-8")


class TarSeries:
    """``<prefix>_000000.tar, <prefix>_000001.tar, ...`` in ``out``, ``per_tar`` samples each (the last fewer): the
    output of the SA-1B-format converters. ``add(key, jpg, json)`` buffers a sample and writes a full tar
    (deterministic, atomic); ``close()`` writes the rest and returns the manifest's shard entries."""

    def __init__(self, out: Path, prefix: str, per_tar: int):
        self.out, self.prefix, self.per_tar = Path(out), prefix, int(per_tar)
        self.shards: list[dict] = []
        self._buf: list[tuple[str, bytes, bytes]] = []

    def add(self, key: str, jpg: bytes, js: bytes) -> None:
        self._buf.append((key, jpg, js))
        if len(self._buf) == self.per_tar:
            self._flush()

    def _flush(self) -> None:
        data = tar_bytes(sample_members(self._buf))
        name = f"{self.prefix}_{len(self.shards):06d}.tar"
        atomic_write(self.out / name, data)
        self.shards.append({"url": name, "samples": len(self._buf), "bytes": len(data), "sha256": sha256_bytes(data)})
        self._buf.clear()

    def close(self) -> list[dict]:
        if self._buf:
            self._flush()
        return self.shards


def write_manifest(out: Path, shards: list[dict], skipped: Mapping[str, int], args: Mapping, **extra) -> Path:
    """Write ``out/manifest.json`` = ``{"shards": [...], "samples", "skipped", "args", **extra}`` atomically."""
    shards = sorted(shards, key=lambda s: s["url"])
    manifest = {
        "shards": shards,
        "samples": int(sum(s["samples"] for s in shards)),
        "skipped": {k: int(v) for k, v in sorted(skipped.items()) if v},
        "args": dict(args),
        **extra,
    }
    path = Path(out) / "manifest.json"
    atomic_write(path, (json.dumps(manifest, indent=1) + "\n").encode("utf-8"))
    return path


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"
