"""Is a download complete? Checks for COCO val2017, LVIS v1 val, BSDS500 and SA-1B tars / prepared shards.

    python -m data_prep.check coco --root /data/coco          # annotations/instances_val2017.json + val2017/
    python -m data_prep.check lvis --root /data/lvis --images /data/coco/val2017 /data/coco/train2017
    python -m data_prep.check bsds --root /data/BSR/BSDS500/data --splits test
    python -m data_prep.check sa1b --root /data/sa1b [--verify]

Prints what is missing (counts and the first few names) and exits 1 when anything is missing or broken (a
``--root`` that is not a folder: one ``error: no such folder: ROOT`` line), 0 when complete. ``check_coco``,
``check_lvis``, ``check_bsds`` and ``check_sa1b`` return a ``CheckReport``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ._common import sha256_file

__all__ = ["CheckReport", "check_coco", "check_lvis", "check_bsds", "check_sa1b", "OFFICIAL"]

# Sizes of the official releases, used when the standard file names are checked.
OFFICIAL = {
    "coco_val2017_images": 5000,
    "lvis_v1_val_images": 19809,
    "bsds500": {"train": 200, "val": 100, "test": 200},
}


@dataclass
class CheckReport:
    """Result of one check. ``ok`` when nothing is missing and there are no problems."""

    dataset: str
    root: str
    expected: int = 0
    found: int = 0
    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.problems

    def format(self, show: int = 5) -> str:
        head = f"{self.dataset} at {self.root}: {'COMPLETE' if self.ok else 'INCOMPLETE'}, {self.found} of {self.expected} present"
        lines = [head]
        if self.missing:
            first = ", ".join(self.missing[:show])
            more = f", ... ({len(self.missing) - show} more)" if len(self.missing) > show else ""
            lines.append(f"  missing {len(self.missing)}: {first}{more}")
        for p in self.problems[:show]:
            lines.append(f"  problem: {p}")
        if len(self.problems) > show:
            lines.append(f"  ... {len(self.problems) - show} more problems")
        return "\n".join(lines)


def _load_json(path: Path, report: CheckReport) -> dict | None:
    if not path.is_file():
        report.problems.append(f"annotation file not found: {path}")
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        report.problems.append(f"annotation file unreadable (truncated download?): {path}: {e}")
        return None


def _image_size_problems(files: list[tuple[Path, dict]]) -> list[str]:
    from PIL import Image

    out = []
    for path, rec in files:
        try:
            with Image.open(path) as im:
                w, h = im.size
                im.verify()
        except Exception as e:
            out.append(f"unreadable image {path.name}: {e}")
            continue
        if (h, w) != (rec.get("height"), rec.get("width")):
            out.append(f"{path.name}: size {h}x{w}, json says {rec.get('height')}x{rec.get('width')}")
    return out


def _check_image_set(report: CheckReport, data: dict, image_dirs: list[Path], verify: bool,
                     expect_images: int | None) -> CheckReport:
    from .coco_to_sa1b import find_image_file

    images = data.get("images", [])
    if not isinstance(images, list) or "annotations" not in data:
        report.problems.append("annotation file has no 'images' / 'annotations' lists")
        return report
    dirs = [d for d in image_dirs if d.is_dir()]
    if not dirs:
        report.problems.append(f"image folder not found: {', '.join(map(str, image_dirs))}")
    report.expected = len(images)
    present = []
    for rec in images:
        path = next((p for p in (find_image_file(d, rec) for d in dirs) if p is not None), None)
        if path is None:
            url = rec.get("coco_url") or ""
            report.missing.append(url.rsplit("/", 1)[-1] if url else rec.get("file_name", str(rec.get("id"))))
        else:
            present.append((path, rec))
    report.found = len(present)
    if expect_images is not None and len(images) != expect_images:
        report.problems.append(f"annotation file lists {len(images)} images; the official file lists {expect_images}")
    if verify:
        report.problems += _image_size_problems(present)
    return report


def check_coco(root: str | Path, ann: str | Path | None = None, images: str | Path | None = None,
               verify: bool = False, expect_images: int | None = -1) -> CheckReport:
    """COCO val2017: ``root/annotations/instances_val2017.json`` and every image it lists in ``root/val2017``.

    ``expect_images``: the image count the json must list (-1: 5000 for the standard file name, else unchecked).
    ``verify``: also open every image and compare its size with the json.
    """
    root = Path(root)
    ann_path = Path(ann) if ann else root / "annotations" / "instances_val2017.json"
    if expect_images == -1:
        expect_images = OFFICIAL["coco_val2017_images"] if ann_path.name == "instances_val2017.json" else None
    report = CheckReport("coco", str(root))
    data = _load_json(ann_path, report)
    if data is None:
        return report
    return _check_image_set(report, data, [Path(images) if images else root / "val2017"], verify, expect_images)


def check_lvis(root: str | Path, ann: str | Path | None = None, images: Sequence[str | Path] | None = None,
               verify: bool = False, expect_images: int | None = -1) -> CheckReport:
    """LVIS v1 val: ``lvis_v1_val.json`` (in ``root`` or ``root/annotations``) and its COCO images.

    Images are found through ``coco_url`` / ``id`` (LVIS file names differ between versions) in ``images`` (default
    ``root/val2017`` and ``root/train2017``: LVIS v1 val draws from both COCO splits).
    """
    root = Path(root)
    if ann:
        ann_path = Path(ann)
    else:
        ann_path = next((p for p in (root / "lvis_v1_val.json", root / "annotations" / "lvis_v1_val.json") if p.is_file()),
                        root / "lvis_v1_val.json")
    if expect_images == -1:
        expect_images = OFFICIAL["lvis_v1_val_images"] if ann_path.name == "lvis_v1_val.json" else None
    dirs = [Path(d) for d in images] if images else [root / "val2017", root / "train2017"]
    report = CheckReport("lvis", str(root))
    data = _load_json(ann_path, report)
    if data is None:
        return report
    return _check_image_set(report, data, dirs, verify, expect_images)


def check_bsds(root: str | Path, splits: Sequence[str] = ("test",), ids: str | Path | None = None,
               verify: bool = False) -> CheckReport:
    """BSDS500: ``root/images/<split>/<id>.jpg`` with ``root/groundTruth/<split>/<id>.mat`` for every id.

    Expected ids: those in ``ids`` (a text file, one id per line, one split) or the official counts
    (train 200, val 100, test 200). ``verify``: also load every .mat and check its image size.
    """
    root = Path(root)
    report = CheckReport("bsds", str(root))
    wanted = None
    if ids is not None:
        if len(splits) != 1:
            raise ValueError("--ids lists the ids of one split; give exactly one --splits")
        wanted = [ln.strip() for ln in Path(ids).read_text().splitlines() if ln.strip()]
    for split in splits:
        img_dir, gt_dir = root / "images" / split, root / "groundTruth" / split
        for d in (img_dir, gt_dir):
            if not d.is_dir():
                report.problems.append(f"folder not found: {d}")
        imgs = {p.stem for p in img_dir.glob("*.jpg")} if img_dir.is_dir() else set()
        gts = {p.stem for p in gt_dir.glob("*.mat")} if gt_dir.is_dir() else set()
        if wanted is not None:
            expected_ids = sorted(wanted)
            report.expected += len(expected_ids)
        else:
            expected_ids = sorted(imgs | gts)
            n_official = OFFICIAL["bsds500"].get(split)
            report.expected += n_official if n_official else len(expected_ids)
            if n_official is not None and len(expected_ids) < n_official:
                report.problems.append(
                    f"{split}: {len(expected_ids)} of {n_official} official images present, {n_official - len(expected_ids)} "
                    "missing (names unknown without an id list: pass --ids)")
        for i in expected_ids:
            if i not in imgs:
                report.missing.append(f"images/{split}/{i}.jpg")
            if i not in gts:
                report.missing.append(f"groundTruth/{split}/{i}.mat")
        complete = [i for i in expected_ids if i in imgs and i in gts]
        report.found += len(complete)
        if verify:
            report.problems += _bsds_verify(img_dir, gt_dir, complete)
    return report


def _bsds_verify(img_dir: Path, gt_dir: Path, ids: list[str]) -> list[str]:
    import scipy.io
    from PIL import Image

    out = []
    for i in ids:
        try:
            with Image.open(img_dir / f"{i}.jpg") as im:
                w, h = im.size
            gt = scipy.io.loadmat(str(gt_dir / f"{i}.mat"))["groundTruth"]
            seg = gt[0, 0]["Segmentation"][0, 0]
            if seg.shape != (h, w):
                out.append(f"{i}: groundTruth {seg.shape} vs image {(h, w)}")
        except Exception as e:
            out.append(f"{i}: unreadable ({type(e).__name__}: {e})")
    return out


def _tar_tail_ok(path: Path) -> bool:
    """Cheap truncation test: a complete tar is a whole number of 512-byte blocks ending in zero blocks."""
    size = path.stat().st_size
    if size < 1024 or size % 512:
        return False
    with open(path, "rb") as f:
        f.seek(size - 1024)
        return f.read(1024) == b"\0" * 1024


def _tar_members_ok(path: Path) -> str | None:
    """Full test: every header readable and every key has a jpg and a json. Returns a problem or None."""
    keys: dict[str, set] = {}
    try:
        with tarfile.open(path) as tar:
            for m in tar:
                base = m.name.rsplit("/", 1)[-1]
                key, _, ext = base.partition(".")
                if m.isfile():
                    keys.setdefault(key, set()).add(ext.lower())
    except (tarfile.TarError, EOFError, OSError) as e:
        return f"{path.name}: unreadable tar ({e})"
    unpaired = sorted(k for k, e in keys.items() if not {"jpg", "json"} <= e)
    if unpaired:
        return f"{path.name}: {len(unpaired)} keys without both jpg and json (first: {unpaired[:3]})"
    return None


def _check_prepared_shards(root: Path, manifest: Path, verify: bool, report: CheckReport) -> None:
    """Prepared shards: every shard ``manifest`` lists exists with its size (``verify``: and sha256)."""
    data = _load_json(manifest, report)
    if data is None:
        return
    report.dataset = "sa1b-shards"
    shards = data.get("shards", [])
    report.expected = len(shards)
    for s in shards:
        p = root / s["url"]
        if not p.is_file():
            report.missing.append(s["url"])
            continue
        if p.stat().st_size != s["bytes"]:
            report.problems.append(f"{s['url']}: {p.stat().st_size} bytes, manifest says {s['bytes']}")
        elif verify and sha256_file(p) != s["sha256"]:
            report.problems.append(f"{s['url']}: sha256 differs from the manifest")
        else:
            report.found += 1


def _expected_tars(root: Path, present: set[str], links: str | Path | None, report: CheckReport) -> list[str]:
    """The raw tar names expected in ``root``: from a links file, else the ``sa_NNNNNN.tar`` range of ``present``."""
    links_path = Path(links) if links else next(iter(sorted(root.glob("*links*.txt"))), None)
    if links_path is not None:
        names = []
        for ln in Path(links_path).read_text().splitlines():
            name = ln.split("\t", 1)[0].strip()
            if name.endswith(".tar"):
                names.append(name)
        expected = names
    else:
        nums = sorted(int(m.group(1)) for n in present if (m := re.fullmatch(r"sa_(\d+)\.tar", n)))
        expected = [f"sa_{i:06d}.tar" for i in range(nums[0], nums[-1] + 1)] if nums else sorted(present)
        if not expected:
            report.problems.append(f"no .tar files in {root}")
    return expected


def check_sa1b(root: str | Path, verify: bool = False, links: str | Path | None = None) -> CheckReport:
    """A folder of SA-1B tars or of prepared shards (``manifest.json``).

    Prepared shards: every shard the manifest lists exists with its size (``verify``: and sha256).
    Raw tars: expected names from a links file (``file_name<TAB>cdn_link``, e.g. Meta's ``sa1b_links.txt``, found
    in ``root`` or given) or else every ``sa_NNNNNN.tar`` number between the lowest and highest present;
    each tar must end cleanly (``verify``: every member readable, every key with jpg + json).
    """
    root = Path(root)
    report = CheckReport("sa1b", str(root))
    if not root.is_dir():
        report.problems.append(f"folder not found: {root}")
        return report
    manifest = root / "manifest.json"
    if manifest.is_file():
        _check_prepared_shards(root, manifest, verify, report)
        return report

    tars = sorted(root.glob("*.tar"))
    present = {p.name for p in tars}
    expected = _expected_tars(root, present, links, report)
    report.expected = len(expected)
    for name in expected:
        p = root / name
        if name not in present:
            report.missing.append(name)
            continue
        problem = None if _tar_tail_ok(p) else f"{name}: truncated (does not end with tar end-of-archive blocks)"
        if problem is None and verify:
            problem = _tar_members_ok(p)
        if problem:
            report.problems.append(problem)
        else:
            report.found += 1
    return report


def _missing_root(a: argparse.Namespace) -> str | None:
    """``no such folder: ROOT`` (or ``not a folder``) when ``--root`` is needed and is not a directory, else None.
    coco / lvis with both ``--ann`` and ``--images`` do not read ``--root``."""
    root = Path(a.root)
    if root.is_dir() or (a.dataset in ("coco", "lvis") and a.ann and a.images):
        return None
    return f"not a folder: {root}" if root.exists() else f"no such folder: {root}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_prep.check", description="Check that a dataset download is complete; exit 1 if not.")
    p.add_argument("dataset", choices=["coco", "lvis", "bsds", "sa1b"])
    p.add_argument("--root", required=True, help="dataset root folder")
    p.add_argument("--ann", help="annotation json (coco/lvis; default: the standard file under --root)")
    p.add_argument("--images", nargs="+", help="image folder(s) (coco: one; lvis: COCO val2017 and/or train2017)")
    p.add_argument("--splits", nargs="+", default=["test"], help="bsds splits to check")
    p.add_argument("--ids", help="bsds: text file with the expected image ids of the one split")
    p.add_argument("--links", help="sa1b: links file listing the expected tar names")
    p.add_argument("--verify", action="store_true", help="deeper (slower) checks: image sizes, tar members, sha256")
    p.add_argument("--show", type=int, default=5, help="how many missing names to print")
    a = p.parse_args(argv)
    missing_root = _missing_root(a)
    if missing_root:
        print(f"python -m data_prep.check: error: {missing_root}", file=sys.stderr)
        return 1  # like any missing download (the module's exit status contract)
    if a.dataset == "coco":
        if a.images and len(a.images) > 1:
            p.error("coco takes one --images folder")
        r = check_coco(a.root, a.ann, a.images[0] if a.images else None, a.verify)
    elif a.dataset == "lvis":
        r = check_lvis(a.root, a.ann, a.images, a.verify)
    elif a.dataset == "bsds":
        r = check_bsds(a.root, a.splits, a.ids, a.verify)
    else:
        r = check_sa1b(a.root, a.verify, a.links)
    print(r.format(a.show))
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
