"""Sampling COCO compressed RLEs at chosen pixels without decoding them at full resolution.

The online loader needs every mask of an image on the coarse AutoPPN grid (``P x P`` cells) and a few masks at the
model's input resolution. Decoding all ~100 SA-1B masks at full resolution with ``pycocotools`` costs ~1 ms per
megapixel mask, the largest single cost of a sample; here the RLE strings of all masks are parsed at once with
vectorised numpy into run boundaries (:class:`RunLengths`), which are then looked up at just the pixels needed
(``np.searchsorted``) or expanded on a column window only (:meth:`RunLengths.decode_window`).

Pixel ``(row, col)`` of an ``h x w`` mask is linear position ``col * h + row`` (column-major, as COCO RLE).
For whole-mask decoding, boxes and areas use :mod:`litesam_pl.data.rle`.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["RunLengths"]

_MAX_CHUNKS = 12  # 60 bits: more 6-bit chunks than any valid count needs


class RunLengths:
    """Run boundaries of ``N`` RLEs of one ``h x w`` image, parsed together.

    Attributes:
        h, w: mask size.
        ends: int64 ``[M]`` cumulative run ends over all masks laid end to end (mask ``i`` occupies linear
            positions ``[i*h*w, (i+1)*h*w)``); run ``j`` covers ``[ends[j-1], ends[j])``.
        first: int64 ``[N + 1]`` index of each mask's first run in ``ends`` (runs alternate 0, 1, 0, ...).
    """

    def __init__(self, segmentations: Sequence[Mapping[str, Any]], h: int, w: int):
        self.h, self.w, self.n = int(h), int(w), len(segmentations)
        hw = self.h * self.w
        for i, seg in enumerate(segmentations):
            size = seg.get("size") if isinstance(seg, Mapping) else None
            if size is None or "counts" not in seg:
                raise ValueError(f"annotation {i}: segmentation is not an RLE dict with 'size' and 'counts'")
            if int(size[0]) != self.h or int(size[1]) != self.w:
                raise ValueError(f"annotation {i}: RLE size {list(size)} does not match the image size {[h, w]}")
        counts, per_mask = self._parse([seg["counts"] for seg in segmentations])
        if counts.size and counts.min() < 0:
            raise ValueError("corrupt RLE: negative run length")
        self.first = np.zeros(self.n + 1, np.int64)
        np.cumsum(per_mask, out=self.first[1:])
        self.ends = np.cumsum(counts)
        totals = self.ends[self.first[1:] - 1] if self.n else np.zeros(0, np.int64)
        expected = (np.arange(self.n, dtype=np.int64) + 1) * hw
        if np.any(per_mask == 0) or not np.array_equal(totals, expected):
            bad = int(np.flatnonzero((per_mask == 0) | (totals != expected))[0]) if self.n else 0
            raise ValueError(f"corrupt RLE (annotation {bad}): run lengths do not sum to h*w = {hw}")

    # ------------------------------------------------------------------ parsing
    @staticmethod
    def _parse(all_counts: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Run lengths of all masks concatenated (int64 ``[M]``) and the number of runs per mask (``[N]``)."""
        n = len(all_counts)
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        if any(isinstance(c, (list, tuple)) for c in all_counts):  # uncompressed counts (COCO iscrowd style)
            lists = [np.asarray(c, np.int64) if isinstance(c, (list, tuple)) else RunLengths._parse([c])[0]
                     for c in all_counts]
            return np.concatenate(lists), np.array([len(x) for x in lists], np.int64)
        strs = [c.encode("ascii") if isinstance(c, str) else bytes(c) for c in all_counts]
        lens = np.fromiter((len(s) for s in strs), np.int64, n)
        buf = np.frombuffer(b"".join(strs), np.uint8).astype(np.int64) - 48
        if buf.size == 0:
            raise ValueError("corrupt RLE: empty counts")
        if buf.min() < 0 or buf.max() > 63:
            raise ValueError("corrupt RLE: counts string has characters outside the COCO alphabet")
        last_char = np.cumsum(lens) - 1
        if np.any(lens == 0) or np.any(buf[last_char] & 0x20):
            raise ValueError("corrupt RLE: truncated counts string")
        ends = np.flatnonzero((buf & 0x20) == 0)  # last 6-bit chunk of every number
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        nchunk = ends - starts + 1
        if nchunk.max() > _MAX_CHUNKS:
            raise ValueError("corrupt RLE: number too long")
        k = np.arange(buf.size, dtype=np.int64) - np.repeat(starts, nchunk)
        x = np.add.reduceat((buf & 0x1F) << (5 * k), starts)
        neg = (buf[ends] & 0x10) != 0
        x[neg] -= np.left_shift(np.int64(1), 5 * nchunk[neg])
        # numbers -> masks; m = index of the number inside its mask
        mask_of = np.searchsorted(last_char, ends)  # every number ends at or before its string's last char
        per_mask = np.bincount(mask_of, minlength=n).astype(np.int64)
        first = np.zeros(n, np.int64)
        np.cumsum(per_mask[:-1], out=first[1:])
        m = np.arange(x.size, dtype=np.int64) - first[mask_of]
        # delta coding (pycocotools rleFrString): counts[m] = x[m] + counts[m - 2] for m > 2, i.e. a running sum
        # over the odd numbers (1, 3, 5, ...) and one over the even numbers from 2 (2, 4, 6, ...); counts[0] = x[0].
        odd = (m & 1) == 1
        even = ~odd & (m >= 2)
        cs_odd = np.cumsum(np.where(odd, x, 0))
        cs_even = np.cumsum(np.where(even, x, 0))
        base = first - 1  # cumulative sums just before each mask's first number
        base_odd = np.where(base >= 0, cs_odd[np.maximum(base, 0)], 0)
        base_even = np.where(base >= 0, cs_even[np.maximum(base, 0)], 0)
        counts = np.where(odd, cs_odd - base_odd[mask_of], np.where(even, cs_even - base_even[mask_of], x))
        return counts, per_mask

    # ------------------------------------------------------------------ queries
    def areas(self) -> np.ndarray:
        """Foreground pixel count of every mask, int64 ``[N]``."""
        lengths = np.diff(self.ends, prepend=0)
        local = np.arange(self.ends.size, dtype=np.int64) - np.repeat(self.first[:-1], np.diff(self.first))
        return np.bincount(np.repeat(np.arange(self.n), np.diff(self.first)), weights=lengths * (local & 1),
                           minlength=self.n).astype(np.int64)

    def boxes(self) -> np.ndarray:
        """Tight boxes ``[N, 4]`` float64 (COCO x, y, w, h, as ``pycocotools.mask.toBbox``); zeros when empty."""
        out = np.zeros((self.n, 4), np.float64)
        hw, h = self.h * self.w, self.h
        lengths = np.diff(self.ends, prepend=0)
        run_mask = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.first))
        local = np.arange(self.ends.size, dtype=np.int64) - self.first[run_mask]
        j = np.flatnonzero(((local & 1) == 1) & (lengths > 0))  # foreground runs, grouped by mask in order
        if j.size == 0:
            return out
        mid = run_mask[j]
        b = self.ends[j] - mid * hw  # exclusive end
        a = b - lengths[j]
        ca, cb = a // h, (b - 1) // h
        span = ca != cb  # a run over a column break covers rows 0 .. h-1
        y_lo = np.where(span, 0, a % h)
        y_hi = np.where(span, h - 1, (b - 1) % h)
        starts = np.flatnonzero(np.r_[True, mid[1:] != mid[:-1]])
        ids = mid[starts]
        x0, x1 = ca[starts], np.maximum.reduceat(cb, starts)
        y0, y1 = np.minimum.reduceat(y_lo, starts), np.maximum.reduceat(y_hi, starts)
        out[ids] = np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1)
        return out

    def sample(self, rows: np.ndarray, cols: np.ndarray, index: np.ndarray | None = None,
               boxes: np.ndarray | None = None) -> np.ndarray:
        """Mask values at the grid ``rows x cols`` (source pixel indices, any order): bool ``[n, R, C]``.

        ``index`` picks the masks (default all ``N``). ``boxes``: the masks' tight boxes ``[N, 4]`` (COCO x, y, w,
        h, all ``N`` masks, as :meth:`boxes` returns them; computed when omitted): only grid points inside a mask's
        box are looked up (everything outside is False), typically a few percent of the grid.
        """
        rows = np.asarray(rows, np.int64)
        cols = np.asarray(cols, np.int64)
        idx = np.arange(self.n, dtype=np.int64) if index is None else np.asarray(index, np.int64)
        if idx.size == 0 or rows.size == 0 or cols.size == 0:
            return np.zeros((idx.size, rows.size, cols.size), bool)
        if rows.min() < 0 or rows.max() >= self.h or cols.min() < 0 or cols.max() >= self.w:
            raise IndexError("sample positions outside the mask")
        if idx.min() < 0 or idx.max() >= self.n:
            raise IndexError("mask index out of range")
        hw, h = self.h * self.w, self.h
        rs, r_inv = np.unique(rows, return_inverse=True)
        cs, c_inv = np.unique(cols, return_inverse=True)
        ids, i_inv = np.unique(idx, return_inverse=True)
        nR, nC = rs.size, cs.size
        # the grid points inside each mask's box: sorted rows rs[ra:rb] x sorted columns cs[ca:cb]
        b = np.asarray(self.boxes() if boxes is None else boxes, np.float64).reshape(self.n, 4)[ids]
        x0, y0 = np.floor(b[:, 0]).astype(np.int64), np.floor(b[:, 1]).astype(np.int64)
        x1, y1 = np.ceil(b[:, 0] + b[:, 2]).astype(np.int64), np.ceil(b[:, 1] + b[:, 3]).astype(np.int64)
        ra, rb = np.searchsorted(rs, y0, "left"), np.searchsorted(rs, y1, "left")
        ca, cb = np.searchsorted(cs, x0, "left"), np.searchsorted(cs, x1, "left")
        nr, nc = np.maximum(rb - ra, 0), np.maximum(cb - ca, 0)
        cnt = nr * nc
        out = np.zeros((ids.size, nR, nC), bool)
        total = int(cnt.sum())
        if total:
            # Per mask, its box points in column-major order (ascending linear positions); masks in ascending id
            # order, so the queries of all masks form one ascending sequence. The run a query falls in is then the
            # number of run ends at or before it: one searchsorted of the M run ends into the Q queries plus a
            # cumulative sum (runs alternate 0, 1, 0, ... from each mask's first run).
            start = np.zeros(ids.size, np.int64)
            np.cumsum(cnt[:-1], out=start[1:])
            k = np.repeat(np.arange(ids.size, dtype=np.int64), cnt)  # which mask (position in ids) each query is
            t = np.arange(total, dtype=np.int64) - start[k]
            nr_k = nr[k]
            ci, ri = ca[k] + t // nr_k, ra[k] + t % nr_k  # indices into cs, rs
            q = ids[k] * hw + cs[ci] * h + rs[ri]
            lo, hi = self.first[ids.min()], self.first[ids.max() + 1]
            ends = self.ends[lo:hi]
            hits = np.bincount(np.searchsorted(q, ends, side="left"), minlength=total + 1)[:total]
            run = np.cumsum(hits) + (lo - self.first[ids])[k]
            out.reshape(-1)[(k * nR + ri) * nC + ci] = (run & 1) == 1
        if ids.size != idx.size or not np.array_equal(ids, idx):
            out = out[i_inv.ravel()]
        if rs.size != rows.size or not np.array_equal(rs, rows):
            out = out[:, r_inv.ravel()]
        if cs.size != cols.size or not np.array_equal(cs, cols):
            out = out[:, :, c_inv.ravel()]
        return np.ascontiguousarray(out)

    def decode_window(self, i: int, x0: int, x1: int) -> np.ndarray:
        """Mask ``i`` decoded on the columns ``[x0, x1)`` (all rows): uint8 0/1 ``[h, x1 - x0]``."""
        a, b = self.first[i], self.first[i + 1]
        hw = self.h * self.w
        ends = self.ends[a:b] - i * hw
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1]
        lo, hi = int(x0) * self.h, int(x1) * self.h
        lengths = np.clip(ends, lo, hi) - np.clip(starts, lo, hi)
        values = (np.arange(ends.size) & 1).astype(np.uint8)
        flat = np.repeat(values, lengths)
        return flat.reshape(int(x1) - int(x0), self.h).T
