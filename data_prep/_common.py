"""Helpers shared by the data_prep tools: deterministic tars, atomic writes, hashing, manifests.

Every file is written atomically and fsynced (``litesam_pl.files``, ``fsync=True``): a shard or a state file is on
disk before the state / manifest that records it, so a resumed or merged run never trusts a file lost in a crash.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from litesam_pl.files import TMP_SUFFIX, AtomicPath, write_json  # TMP_SUFFIX: data_prep.sa1b's stale-file glob
from litesam_pl.files import atomic_write as _atomic_write

# Fixed tar header fields so the same members always give byte-identical tars.
TAR_MTIME = 1_600_000_000  # 2020-09-13, an arbitrary fixed time


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
        self._target = AtomicPath(self.path, fsync=True, unique=False)  # sa1b finds stale ones by name
        self.tmp = self._target.tmp
        self._file = open(self.tmp, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)
        self.samples = 0

    def write(self, key: str, jpg: bytes, js: bytes) -> None:
        for name, data in sample_members([(key, jpg, js)]):
            _add(self._tar, name, data)
        self.samples += 1

    def close(self) -> dict:
        self._tar.close()
        self._file.close()
        info = {"url": self.path.name, "samples": self.samples, "bytes": self.tmp.stat().st_size,
                "sha256": sha256_file(self.tmp)}
        self._target.commit()
        return info

    def abort(self) -> None:
        """Close and delete the partial file."""
        try:
            self._tar.close()
            self._file.close()
        finally:
            self._target.discard()


def sample_members(samples: Sequence[tuple[str, bytes, bytes]]) -> list[tuple[str, bytes]]:
    """``(key, jpg, json)`` samples -> tar members ``<key>.jpg``, ``<key>.json`` (jpg first, keys in order)."""
    members: list[tuple[str, bytes]] = []
    for key, jpg, js in samples:
        if "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} must not contain '.' or '/' (webdataset splits keys at the first dot)")
        members += [(f"{key}.jpg", jpg), (f"{key}.json", js)]
    return members


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via ``<path>.tmp``, fsync and ``os.replace`` (``litesam_pl.files.atomic_write``):
    the file appears only once complete and on disk."""
    _atomic_write(path, data, fsync=True)


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
    return write_json(Path(out) / "manifest.json", manifest, fsync=True)


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"
