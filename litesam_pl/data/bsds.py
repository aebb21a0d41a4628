"""BSDS500 reader: the ``images/<split>/*.jpg`` + ``groundTruth/<split>/*.mat`` layout and the bench's inputs.

Ground truth (``groundTruth/<split>/<id>.mat``, MATLAB v5): ``m['groundTruth']`` is a 1xK cell of structs with
``Segmentation`` (uint16 label map) and ``Boundaries`` (uint8 0/1 map), one per annotator (K = 4..9).

Predictions the BSDS bench accepts, turned into a soft boundary map ``pb`` in [0, 1] exactly as
``evaluation_bdry_image.m`` does:
- ``ucm2`` (``.mat`` with key ``ucm2``, shape (2H+1, 2W+1)): ``pb = ucm2[2::2, 2::2]``;
- ``png`` (8-bit soft map): ``pb = png / 255`` (16-bit pngs: ``/ 65535``);
- ``npy`` (our addition): a float [H, W] map in [0, 1] saved with ``numpy.save`` (uint8 arrays are divided by 255);
- ``segs`` (``.mat`` with key ``segs``, a cell of label maps): one boundary map per segmentation (``seg2bdry``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

__all__ = [
    "PRED_FORMATS",
    "BSDS500",
    "load_ground_truth",
    "load_boundaries",
    "load_prediction",
    "load_segs",
    "seg_to_boundaries",
    "segmentation_boxes",
    "read_image",
]

PathLike = Union[str, Path]
PRED_FORMATS = ("png", "npy", "ucm2", "segs")
_PRED_SUFFIX = {"png": ".png", "npy": ".npy", "ucm2": ".mat", "segs": ".mat"}


def _loadmat(path: PathLike, key: str) -> np.ndarray:
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        m = loadmat(str(path))
    except Exception as e:  # scipy raises several types on truncated / non-mat files
        raise ValueError(f"cannot read MATLAB file {path}: {e}") from e
    if key not in m:
        keys = sorted(k for k in m if not k.startswith("__"))
        raise KeyError(f"{path} has no '{key}' variable (it has {keys})")
    return m[key]


def load_ground_truth(path: PathLike) -> List[Dict[str, np.ndarray]]:
    """All annotators of one image: ``[{"boundaries": bool [H, W], "segmentation": uint16 [H, W]}]``."""
    gt = _loadmat(path, "groundTruth")
    if gt.dtype != object or gt.size == 0:
        raise ValueError(f"{path}: 'groundTruth' is not a non-empty cell array")
    out = []
    for k, entry in enumerate(gt.ravel()):
        try:
            bnd = np.asarray(entry["Boundaries"][0, 0])
            seg = np.asarray(entry["Segmentation"][0, 0])
        except (ValueError, IndexError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: annotator {k} lacks Boundaries/Segmentation fields") from e
        if bnd.ndim != 2 or bnd.shape != seg.shape:
            raise ValueError(f"{path}: annotator {k} has Boundaries {bnd.shape} and Segmentation {seg.shape}")
        out.append({"boundaries": bnd != 0, "segmentation": seg})
    return out


def load_boundaries(path: PathLike) -> List[np.ndarray]:
    """The annotators' boundary maps of one image, each bool [H, W]."""
    return [g["boundaries"] for g in load_ground_truth(path)]


def read_image(path: PathLike) -> np.ndarray:
    """An RGB image as uint8 [H, W, 3], decoded by the data layer's one decoder (``transforms.decode_image``)."""
    from .transforms import decode_image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        return decode_image(path.read_bytes())
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def load_segs(path: PathLike) -> List[np.ndarray]:
    """The bench's ``segs`` input: a list of label maps [H, W]."""
    segs = _loadmat(path, "segs")
    if segs.dtype == object:
        return [np.asarray(s) for s in segs.ravel()]
    if segs.ndim == 2:
        return [segs]
    raise ValueError(f"{path}: 'segs' must be a cell of label maps, got array of shape {segs.shape}")


def segmentation_boxes(seg: np.ndarray, min_area: int = 16) -> np.ndarray:
    """xyxy float32 ``[K, 4]`` boxes of each label in an integer label map with >= ``min_area`` pixels.

    Boxes span whole pixels (``x0 = first column``, ``x1 = last column + 1``), labels in increasing order.
    """
    seg = np.asarray(seg)
    if seg.ndim != 2:
        raise ValueError(f"segmentation must be [H, W], got shape {seg.shape}")
    boxes = []
    for label in np.unique(seg):
        ys, xs = np.nonzero(seg == label)
        if len(ys) >= min_area:
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def seg_to_boundaries(seg: np.ndarray) -> np.ndarray:
    """Boundaries of a label map at image size (the bench's ``seg2bdry(seg, 'imageSize')``), bool [H, W].

    A pixel is a boundary when its label differs from the pixel below or to its right; the map is the odd
    sub-grid of the double-size edgel map, so corners where two edgels meet are included.
    """
    seg = np.asarray(seg)
    if seg.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {seg.shape}")
    h, w = seg.shape
    ev = np.zeros((h, w), dtype=bool)  # vertical neighbour differs: edgel between rows r and r+1
    ev[:-1, :] = seg[:-1, :] != seg[1:, :]
    eh = np.zeros((h, w), dtype=bool)  # horizontal neighbour differs
    eh[:, :-1] = seg[:, :-1] != seg[:, 1:]
    # double-size grid: pixel (r, c) of the output is bdry(2r+3, 2c+3) in MATLAB indices, i.e. the corner
    # between pixels (r, c), (r+1, c), (r, c+1), (r+1, c+1).
    out = np.zeros((h, w), dtype=bool)
    out[:-1, :-1] = eh[:-1, :-1] | eh[1:, :-1] | ev[:-1, :-1] | ev[:-1, 1:]
    # the double-size map's last row/column copy their neighbours (bdry(end,:) = bdry(end-1,:)), which at image
    # size means the last row takes the horizontal edgels of row h-1 and the last column the vertical ones
    out[-1, :] = eh[-1, :]
    out[:, -1] = ev[:, -1]
    out[-1, -1] = False
    return out


def load_prediction(path: PathLike, fmt: str) -> Union[np.ndarray, List[np.ndarray]]:
    """A prediction as the bench reads it: ``pb`` float64 [H, W] in [0, 1], or for ``segs`` a list of bool maps."""
    if fmt not in PRED_FORMATS:
        raise ValueError(f"unknown prediction format {fmt!r}; choose from {PRED_FORMATS}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prediction not found: {path}")
    if fmt == "ucm2":
        ucm2 = np.asarray(_loadmat(path, "ucm2"), dtype=np.float64)
        if ucm2.ndim != 2 or ucm2.shape[0] % 2 == 0 or ucm2.shape[1] % 2 == 0:
            raise ValueError(f"{path}: ucm2 must be (2H+1, 2W+1), got {ucm2.shape}")
        return ucm2[2::2, 2::2]
    if fmt == "segs":
        return [seg_to_boundaries(s) for s in load_segs(path)]
    if fmt == "png":
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f"cannot decode png {path}")
        if img.ndim == 3:
            raise ValueError(f"{path}: edge maps must be single-channel, got {img.shape[2]} channels")
        if img.dtype == np.uint8:
            return img.astype(np.float64) / 255.0
        if img.dtype == np.uint16:
            return img.astype(np.float64) / 65535.0
        raise ValueError(f"{path}: unsupported png dtype {img.dtype}")
    try:
        arr = np.load(str(path), allow_pickle=False)
    except Exception as e:
        raise ValueError(f"cannot read npy {path}: {e}") from e
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise ValueError(f"{path}: edge map must be [H, W], got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    return arr.astype(np.float64)


class BSDS500:
    """Image ids, images and ground truth of one BSDS500 split.

    Args:
        root: folder with ``images/<split>/*.jpg`` and ``groundTruth/<split>/*.mat``. The bench's flat example
            layout (``images/*.jpg``, ``groundTruth/*.mat``) is read when ``groundTruth/<split>`` is absent.
        split: ``test``, ``val`` or ``train``.
        limit: keep only the first ``limit`` ids (string-sorted, as the bench lists them).

    The ids are those with a ground-truth file (the bench iterates over ``groundTruth``); each needs its jpg.
    """

    def __init__(self, root: PathLike, split: str = "test", limit: Optional[int] = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"BSDS500 folder not found: {self.root}")
        self.split = split
        gt_dir = self.root / "groundTruth" / split
        img_dir = self.root / "images" / split
        if not gt_dir.is_dir():
            flat = self.root / "groundTruth"
            if flat.is_dir() and any(flat.glob("*.mat")):
                gt_dir, img_dir = flat, self.root / "images"
            else:
                raise FileNotFoundError(f"no ground truth at {gt_dir} (expected groundTruth/<split>/*.mat)")
        self.gt_dir, self.image_dir = gt_dir, img_dir
        ids = sorted(p.stem for p in gt_dir.glob("*.mat"))
        if not ids:
            raise FileNotFoundError(f"no .mat ground-truth files in {gt_dir}")
        if limit is not None:
            if limit < 1:
                raise ValueError(f"limit must be >= 1, got {limit}")
            ids = ids[:limit]
        self.ids: List[str] = ids
        self._last_gt: Optional[Tuple[str, List[Dict[str, np.ndarray]]]] = None

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, image_id: str) -> Path:
        return self.image_dir / f"{image_id}.jpg"

    def gt_path(self, image_id: str) -> Path:
        return self.gt_dir / f"{image_id}.mat"

    def image(self, image_id: str) -> np.ndarray:
        """uint8 [H, W, 3] RGB."""
        return read_image(self.image_path(image_id))

    def ground_truth(self, image_id: str) -> List[Dict[str, np.ndarray]]:
        """``load_ground_truth`` of the image; the last image's is kept, so its several readers parse it once (the
        arrays are the cached ones: copy before changing them)."""
        if self._last_gt is None or self._last_gt[0] != image_id:
            self._last_gt = (image_id, load_ground_truth(self.gt_path(image_id)))
        return self._last_gt[1]

    def boundaries(self, image_id: str) -> List[np.ndarray]:
        """The annotators' boundary maps, each bool [H, W]."""
        return [g["boundaries"] for g in self.ground_truth(image_id)]

    def region_boxes(self, image_id: str, annotator: int = 0, min_area: int = 16) -> np.ndarray:
        """xyxy float32 ``[K, 4]`` boxes (pixel edges: ``x1 = last column + 1``) of one annotator's regions.

        Every label of the annotator's segmentation with at least ``min_area`` pixels, in label order (a label
        in several pieces gets one box around all of them): the oracle prompts of ``benchmarks.bsds --prompts
        gt-boxes`` (a diagnostic, never a Table 7 figure).
        """
        gts = self.ground_truth(image_id)
        if not 0 <= annotator < len(gts):
            raise ValueError(f"{image_id}: annotator {annotator} out of range (the image has {len(gts)})")
        return segmentation_boxes(gts[annotator]["segmentation"], min_area=min_area)

    def prediction_paths(self, pred_dir: PathLike, fmt: str) -> Dict[str, Path]:
        """``{id: path}`` of precomputed predictions; raises listing the ids whose file is missing."""
        if fmt not in PRED_FORMATS:
            raise ValueError(f"unknown prediction format {fmt!r}; choose from {PRED_FORMATS}")
        pred_dir = Path(pred_dir)
        if not pred_dir.is_dir():
            raise FileNotFoundError(f"prediction folder not found: {pred_dir}")
        paths = {i: pred_dir / f"{i}{_PRED_SUFFIX[fmt]}" for i in self.ids}
        missing = [i for i, p in paths.items() if not p.is_file()]
        if missing:
            more = "" if len(missing) <= 5 else f" and {len(missing) - 5} more"
            raise FileNotFoundError(
                f"{len(missing)} of {len(paths)} predictions missing in {pred_dir} "
                f"(e.g. {', '.join(missing[:5])}{more}; expected <id>{_PRED_SUFFIX[fmt]})"
            )
        return paths

    def __getitem__(self, index: int) -> Dict[str, object]:
        image_id = self.ids[index]
        return {"image_id": image_id, "image": self.image(image_id), "boundaries": self.boundaries(image_id)}

    def __repr__(self) -> str:
        return f"BSDS500(root={str(self.root)!r}, split={self.split!r}, images={len(self)})"
