"""Shard URLs and shard sizes: expansion, early checks, sample counting, what an epoch reads, opening a shard.

- :func:`expand_urls` turns shard specs (files, directories, globs, brace patterns ``sa_{000..009}.tar``, ``pipe:``
  commands, fsspec URLs such as ``s3://bucket/sa_{000..999}.tar``) into a list of URLs and fails early and clearly
  on an empty list or a missing local path (:class:`ShardsError`, naming the option).
- :func:`check_urls` probes local shards (and the first fsspec one) before any worker starts.
- :func:`shard_sample_counts` / :func:`count_samples`: samples per shard from ``manifest.json`` or the tar headers.
- :func:`epoch_coverage`: what one training epoch reads when shards are split by rank and worker.
- :func:`open_url`: a readable stream for a shard URL (local, ``pipe:``, http(s)/gs, fsspec).
"""
from __future__ import annotations

import glob
import json
import os
import tarfile
from typing import Sequence
from urllib.parse import urlparse

__all__ = ["expand_urls", "ShardsError", "check_urls", "count_samples", "shard_sample_counts", "epoch_coverage",
           "open_url"]

_GLOB_CHARS = set("*?[")


def _braceexpand(spec: str) -> list[str]:
    import braceexpand

    return list(braceexpand.braceexpand(spec))


def _is_remote(url: str) -> bool:
    scheme = urlparse(url).scheme
    return url.startswith("pipe:") or (len(scheme) > 1 and scheme != "file")


def _local_path(url: str) -> str:
    return urlparse(url).path if url.startswith("file://") else url


def expand_urls(specs: str | Sequence[str] | None, what: str = "shards") -> list[str]:
    """Shard specs -> shard URLs, in a stable order.

    Each spec is a local ``.tar`` path, a directory (its ``manifest.json`` shard list when present, else its
    ``*.tar`` files), a glob (``data/sa_*.tar``), a brace pattern (``sa_{000000..000009}.tar``), a ``pipe:``
    command or a remote/fsspec URL (``s3://``, ``gs://``, ``http(s)://``, ...; globs on fsspec URLs are expanded
    with fsspec). A string may hold several specs separated by ``::`` (webdataset style).

    Raises:
        ValueError: no shard at all.
        FileNotFoundError: a local path or glob that matches nothing.
    """
    if specs is None:
        raise ValueError(f"no {what} given")
    if isinstance(specs, (str, os.PathLike)):
        specs = [str(specs)]
    urls: list[str] = []
    for spec in specs:
        for part in str(spec).split("::"):
            part = part.strip()
            if not part:
                continue
            for url in _braceexpand(part):
                try:
                    urls.extend(_expand_one(url))
                except (OSError, ValueError) as e:  # name the option the user set (data.train_shards, ...)
                    raise ShardsError(f"{what}: {e}") from e
    if not urls:
        raise ShardsError(f"empty list of {what}: {list(specs)!r}")
    return urls


class ShardsError(FileNotFoundError, ValueError):
    """A shard option that names nothing readable (message: the option, then what is wrong); a
    ``FileNotFoundError`` and a ``ValueError`` for callers that catch either."""


def _expand_one(url: str) -> list[str]:
    if url.startswith("pipe:"):
        return [url]
    if _is_remote(url):
        if _GLOB_CHARS & set(urlparse(url).path):
            import fsspec

            fs, path = fsspec.core.url_to_fs(url)
            found = sorted(fs.glob(path))
            if not found:
                raise FileNotFoundError(f"no shards match {url!r}")
            return [fs.unstrip_protocol(p) for p in found]
        return [url]
    path = os.path.expanduser(_local_path(url))
    if _GLOB_CHARS & set(path):
        found = sorted(p for p in glob.glob(path) if os.path.isfile(p))
        if not found:
            raise FileNotFoundError(f"no shards match the glob {url!r}")
        return found
    if os.path.isdir(path):
        manifest = os.path.join(path, "manifest.json")
        if os.path.isfile(manifest):
            with open(manifest) as f:
                shards = json.load(f).get("shards", [])
            found = [s["url"] if os.path.isabs(s["url"]) else os.path.join(path, s["url"]) for s in shards]
        else:
            found = sorted(glob.glob(os.path.join(path, "*.tar")))
        if not found:
            raise ValueError(f"shard directory {url!r} holds no .tar shards")
        return found
    if not os.path.exists(path):
        raise FileNotFoundError(f"shard not found: {url!r}")
    return [path]


def check_urls(urls: Sequence[str]) -> None:
    """Fail early on local shards that are missing or unreadable and on fsspec URLs whose first shard is missing.

    ``pipe:`` and http(s) URLs are not probed (a bad one is reported by the stream: see :class:`SA1BStream`).
    """
    for url in urls:
        if _is_remote(url):
            continue
        path = _local_path(url)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"shard not found: {url!r}")
        if not os.access(path, os.R_OK):
            raise PermissionError(f"shard not readable: {url!r}")
    remote = [u for u in urls if _is_remote(u) and not u.startswith("pipe:") and urlparse(u).scheme not in
              ("http", "https")]
    if remote:
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(remote[0])
        except (ImportError, ValueError) as e:
            raise RuntimeError(f"cannot open {remote[0]!r} with fsspec ({e}); install the matching fsspec backend "
                               "(e.g. s3fs for s3://)") from e
        if not fs.exists(path):
            raise FileNotFoundError(f"shard not found: {remote[0]!r}")


def count_samples(urls: Sequence[str]) -> int | None:
    """Number of samples in the shards (see ``shard_sample_counts``); ``None`` for remote shards."""
    counts = shard_sample_counts(urls)
    return None if counts is None else sum(counts)


def epoch_coverage(counts: Sequence[int], world: int, workers: int, batches_per_epoch: int, batch_size: int) -> dict:
    """What one training epoch reads when shards are split by rank and worker (``SA1BStream``, not resampled).

    Every reader (rank x worker) owns ``urls[rank::world][worker::workers]`` of a per-epoch shard order and must
    deliver its share of ``batches_per_epoch`` batches; one that owns fewer samples than its share starts a second,
    reshuffled pass over all shards (samples read twice this epoch), one that owns more leaves the rest of its
    shards unread until a later epoch. Shard sizes are taken as their mean (exact when all shards have one size).
    Returns ``{"samples", "epoch_samples", "repeated", "unread", "readers", "shards_per_reader": (min, max)}``.
    """
    n, readers = len(counts), max(1, world) * max(1, workers)
    mean = sum(counts) / max(1, n)
    repeated = unread = 0.0
    owned_shards = []
    for rank in range(max(1, world)):
        for w in range(max(1, workers)):
            k = len(range(n)[rank::max(1, world)][w::max(1, workers)])
            owned_shards.append(k)
            nb = batches_per_epoch // max(1, workers) + (1 if w < batches_per_epoch % max(1, workers) else 0)
            need, own = nb * batch_size, k * mean
            repeated += max(0.0, need - own)
            unread += max(0.0, own - need)
    return {"samples": int(sum(counts)), "epoch_samples": int(batches_per_epoch * batch_size * max(1, world)),
            "repeated": int(round(repeated)), "unread": int(round(unread)), "readers": readers,
            "shards_per_reader": (min(owned_shards), max(owned_shards))}


def shard_sample_counts(urls: Sequence[str]) -> list[int] | None:
    """Samples per shard: from ``manifest.json`` files next to them when they list every shard, else by reading
    the tar headers of local shards (uncompressed tars: headers only, member data is seeked over; compressed tars
    are streamed whole); ``None`` for remote shards."""
    by_dir: dict[str, dict[str, int]] = {}
    out: list[int] = []
    for url in urls:
        if _is_remote(url):
            return None
        path = os.path.abspath(_local_path(url))
        d = os.path.dirname(path)
        if d not in by_dir:
            by_dir[d] = {}
            mf = os.path.join(d, "manifest.json")
            if os.path.isfile(mf):
                try:
                    with open(mf) as f:
                        for s in json.load(f).get("shards", []):
                            p = s["url"] if os.path.isabs(s["url"]) else os.path.join(d, s["url"])
                            by_dir[d][os.path.abspath(p)] = int(s["samples"])
                except (OSError, ValueError, KeyError, TypeError):
                    by_dir[d] = {}
        n = by_dir[d].get(path)
        if n is None:
            n = len(_tar_sample_keys(path))
        out.append(n)
    return out


def _tar_sample_keys(path: str) -> set[str]:
    """Keys of the samples (members ``<key>.json``) of a local tar, reading its headers only.

    An uncompressed tar is opened seekable (``"r:"``): tarfile then seeks over member data and reads one 512-byte
    header block per member (plus buffer read-ahead), not the whole file. A compressed tar (gzip, bz2, xz) cannot
    be seeked without decompressing everything before the target, so it is streamed (``"r|*"``), which reads and
    decompresses every byte.
    """
    keys: set[str] = set()
    with open(path, "rb") as f:
        try:
            tf = tarfile.open(fileobj=f, mode="r:")
        except tarfile.ReadError:  # not a plain tar: compressed (or broken; the stream then raises)
            f.seek(0)
            tf = tarfile.open(fileobj=f, mode="r|*")
        with tf:
            for info in tf:
                if info.isreg():
                    base = os.path.basename(info.name)
                    if "." in base and base.split(".", 1)[1].lower() == "json":
                        keys.add(info.name.rsplit(".", 1)[0])
    return keys


def open_url(url: str):
    """A readable binary stream for a shard URL: local files, ``pipe:``, http(s)/gs (webdataset) or fsspec."""
    from webdataset.gopen import gopen, gopen_schemes

    scheme = urlparse(url).scheme
    if url.startswith("pipe:") or not _is_remote(url) or scheme in gopen_schemes:
        return gopen(url, "rb")
    import fsspec

    return fsspec.open(url, "rb").open()
