"""BSDS500 zero-shot edge detection (Lite-SAM Table 7): ODS, OIS, AP and R50 with the original BSDS bench protocol.

Edge sources (at most one of the first four, plus any --baselines):
  --ckpt PATH            our model (export or Lightning checkpoint): SegEvery without IoU/stability filters,
                         SAM App. D.2 edge maps (Sobel on mask probabilities, outer boundary, max, normalise, NMS)
  --model NAME           the same with a randomly initialised registry model (smoke runs only)
  --detector sobel|canny the classical rows of Table 7
  --detector box-fill    diagnostic: each GT region's box filled, the reference for --prompts gt-boxes
  --pred DIR             precomputed maps <id>.png / <id>.npy / <id>.mat (--pred-format png|npy|ucm2|segs)
  --baselines sobel canny  classical detectors scored beside that source (or alone) on the same images and
                         thresholds: one table row per source, the JSON keyed per source ("sources"), all curves
                         on --plot; --eval-dir / --save-edges then get one subfolder per source

Diagnostic (reads the test ground truth, so never a Table 7 figure): --prompts gt-boxes prompts the model with one
box per region of one annotator instead of SegEvery's proposals, and --baselines box-fill scores those boxes
themselves; the two rows separate "the prompts are wrong" from "the masks do not follow the edges".

Examples:
  python -m benchmarks.bsds --data ../shared/data/bsds500 --detector canny --workers 2 --json canny.json
  python -m benchmarks.bsds --data ../shared/data/bsds500 --pred ../shared/data/bsds500/ucm2_gPb_owt_ucm/test \\
      --pred-format ucm2 --limit 5 --thresholds 99
  python -m benchmarks.bsds --data ../shared/data/bsds500 --ckpt litesam.pt --json litesam.json --plot pr.png
  python -m benchmarks.bsds --data ../shared/data/bsds500 --ckpt litesam.pt --baselines sobel canny \
      --thresholds 19 --json table7.json --plot pr.png
  python -m benchmarks.bsds --data ../shared/data/bsds500 --ckpt litesam.pt --prompts gt-boxes \
      --baselines box-fill canny --limit 20 --thresholds 15
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from litesam_pl.data.bsds import BSDS500, PRED_FORMATS, load_prediction
from litesam_pl.metrics.bsds import DEFAULT_MAX_DIST, BoundaryCounts, bsds_thresholds, evaluate_images, summarize
from benchmarks._wandb import publish
from litesam_pl.inference.segevery_options import add_option_flags
from benchmarks.bsds_report import format_edge_table, plot_pr_curves
from benchmarks.toolkit.results import write_json
from benchmarks.toolkit.timing import Laps

DETECTOR_CHOICES = ["sobel", "canny", "box-fill"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bsds", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="BSDS500 folder (images/<split>/*.jpg, groundTruth/<split>/*.mat)")
    p.add_argument("--split", default="test", choices=["test", "val", "train"], help="split to score (default test)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N ids (string-sorted)")
    src = p.add_argument_group("edge source (one of --ckpt / --model / --detector / --pred, and/or --baselines)")
    src.add_argument("--ckpt", help="our model: a `litesam export` file or a Lightning checkpoint")
    src.add_argument("--model", help="registry name built with RANDOM weights (smoke runs), e.g. litesam")
    src.add_argument("--detector", choices=DETECTOR_CHOICES,
                     help="classical detector, or box-fill: the annotator's region boxes filled (the reference row "
                          "of --prompts gt-boxes; reads the ground truth, a diagnostic)")
    src.add_argument("--pred", help="folder of precomputed edge maps named <image id>.<ext>")
    src.add_argument("--baselines", nargs="+", default=[], choices=DETECTOR_CHOICES, metavar="DETECTOR",
                     help="detectors (sobel, canny, box-fill) scored beside the source, same images and thresholds")
    p.add_argument("--pred-format", default="png", choices=list(PRED_FORMATS),
                   help="format of --pred files: png (pb=png/255), npy (float in [0,1]), ucm2 (pb=ucm2[2::2,2::2]), "
                        "segs (one segmentation per threshold)")
    bench = p.add_argument_group("benchmark")
    bench.add_argument("--thresholds", type=int, default=99, help="number of thresholds k/(N+1) (official: 99)")
    bench.add_argument("--max-dist", type=float, default=DEFAULT_MAX_DIST,
                       help="match tolerance, fraction of the image diagonal (official: 0.0075)")
    bench.add_argument("--no-thin", action="store_true", help="do not thin thresholded maps (official: thin)")
    bench.add_argument("--matcher", default="fast", choices=["fast", "official"],
                       help="pixel matcher: fast (maximum-cardinality matching, default) or official (the bench's "
                            "correspondPixels, ~15x slower); see docs/benchmarks.md")
    bench.add_argument("--workers", type=int, default=1, help="processes matching images in parallel")
    bench.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    det = p.add_argument_group("classical detectors")
    det.add_argument("--sigma", type=float, default=None,
                     help="Gaussian smoothing in pixels (default: sobel 1.0, canny 2.0)")
    mdl = p.add_argument_group("model (--ckpt / --model)")
    mdl.add_argument("--device", default="cpu", help="torch device (default cpu)")
    mdl.add_argument("--img-size", type=int, default=None,
                     help="input side: the --ckpt weights run at this side (as benchmarks.coco), or the random "
                          "--model's side (default: the checkpoint's own)")
    mdl.add_argument("--prompts", default="auto", choices=["auto", "autoppn", "grid", "gt-boxes"],
                     help="SegEvery prompts: AutoPPN (Lite-SAM), the point grid (SAM App. D.2), auto (AutoPPN when "
                          "the model has it), or gt-boxes: one box per region of --annotator, single-mask output, no "
                          "NMS (oracle prompts: a diagnostic that reads the ground truth, never a Table 7 figure)")
    mdl.add_argument("--annotator", type=int, default=None,
                     help="gt-boxes / box-fill: whose regions give the boxes (0-based, default 0; one box around "
                          "each label of at least 16 pixels, around all its pieces when a label is split)")
    # SegEvery's own options at SAM App. D.2's settings: a 16 x 16 grid (the grid path), box NMS (SAM's AMG) at 0.7
    add_option_flags(mdl, ("points_per_side", "box_nms_thresh", "nms"),
                       defaults={"points_per_side": 16, "nms": "box"})
    mdl.add_argument("--no-edge-nms", action="store_true", help="skip the edge NMS of the SAM protocol")
    out = p.add_argument_group("outputs")
    out.add_argument("--json", help="write results JSON here")
    out.add_argument("--plot", help="write a PR-curve PNG (with iso-F curves) here")
    out.add_argument("--plot-with", nargs="*", default=[], metavar="JSON",
                     help="earlier --json results to draw on the same PR plot")
    out.add_argument("--save-edges", help="write each edge map as an 8-bit <id>.png here")
    out.add_argument("--eval-dir",
                     help="cache per-image counts here as the bench's <id>_ev1.txt; images already there (same "
                          "thresholds) are not evaluated again, so an interrupted run resumes")
    out.add_argument("--name", help="method name in the table and plot")
    return p


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    sources = [s for s in ("ckpt", "model", "detector", "pred") if getattr(args, s)]
    if not sources and not args.baselines:
        p.error("give an edge source: --ckpt PATH (our model), --detector sobel|canny, or --pred DIR "
                "(--pred-format png|npy|ucm2|segs), and/or --baselines sobel canny")
    if len(sources) > 1:
        p.error(f"give exactly one edge source (more classical ones with --baselines), got "
                f"{', '.join('--' + s for s in sources)}")
    dup = [d for d in set(args.baselines) if args.baselines.count(d) > 1 or d == args.detector]
    if dup:
        p.error(f"edge source given twice: {', '.join(sorted(dup))}")
    if args.name and not sources and len(args.baselines) > 1:
        p.error("--name names the --ckpt / --model / --detector / --pred source; the baselines keep theirs")
    if args.thresholds < 1:
        p.error("--thresholds must be >= 1")
    if args.workers < 1:
        p.error("--workers must be >= 1")
    if args.prompts == "gt-boxes" and not (args.ckpt or args.model):
        p.error("--prompts gt-boxes needs a model (--ckpt / --model)")
    if args.annotator is not None and not reads_ground_truth(args):
        p.error("--annotator only applies to --prompts gt-boxes and the box-fill detector")
    if args.annotator is not None and args.annotator < 0:
        p.error("--annotator must be >= 0")
    args.annotator = args.annotator or 0
    if not (0 < args.max_dist < 1):
        p.error("--max-dist must be in (0, 1)")
    if args.ckpt and not Path(args.ckpt).is_file():
        p.error(f"--ckpt: file not found: {args.ckpt}")
    if args.img_size is not None and not (args.model or args.ckpt):
        p.error("--img-size only applies to --ckpt / --model")
    if args.img_size is not None and args.img_size < 16:
        p.error("--img-size must be >= 16")


def reads_ground_truth(args: argparse.Namespace) -> bool:
    """Whether any edge source of ``args`` is built from the ground truth (the oracle diagnostic)."""
    return args.prompts == "gt-boxes" or args.detector == "box-fill" or "box-fill" in args.baselines


def source_reads_ground_truth(args: argparse.Namespace) -> bool:
    """Whether this one source (the model, the detector or the predictions of ``args``) is built from the GT."""
    return args.detector == "box-fill" or (args.prompts == "gt-boxes" and bool(args.ckpt or args.model))


def check_annotator(ds: BSDS500, annotator: int) -> None:
    """Exit with one line when an image of ``ds`` has no annotator ``annotator`` (checked before any work)."""
    from litesam_pl.data.bsds import load_ground_truth

    fewest = min((len(load_ground_truth(ds.gt_path(i))), i) for i in ds.ids)
    if annotator >= fewest[0]:
        sys.exit(f"error: --annotator {annotator}: image {fewest[1]} has only {fewest[0]} annotators (0-based)")


def load_edge_model(args: argparse.Namespace):
    """The model of --ckpt (``litesam_pl.load_model``) or a random --model, in eval mode on --device."""
    from litesam_pl.models.checkpoint import load_model, load_or_random

    if args.ckpt and args.img_size is not None:  # the checkpoint's weights at another input side
        return load_model(args.ckpt, img_size=args.img_size).to(args.device).eval()
    kwargs = {} if args.ckpt or args.img_size is None else {"img_size": args.img_size}
    model, _ = load_or_random(args.ckpt, args.model, seed=0, **kwargs)
    return model.to(args.device).eval()


def method_name(args: argparse.Namespace) -> str:
    """The method's name in the table, plot and JSON; a ground-truth source always says so, even with --name."""
    if args.name:
        return args.name + (_gt_label(args) if source_reads_ground_truth(args) else "")
    if args.detector == "box-fill":
        return f"box-fill (GT boxes, annotator {args.annotator})"
    if args.detector:
        return args.detector + ("" if args.sigma is None else f" (sigma={args.sigma})")
    if args.pred:
        pred = Path(args.pred).resolve()
        return f"{pred.parent.name}/{pred.name} ({args.pred_format})"
    name = Path(args.ckpt).stem if args.ckpt else f"{args.model} (random weights)"
    if args.ckpt and args.img_size is not None:
        name += f" @{args.img_size}px"
    return name + (_gt_label(args) if args.prompts == "gt-boxes" else "")


def _gt_label(args: argparse.Namespace) -> str:
    kind = "GT boxes" if args.detector == "box-fill" else "GT-box prompts"
    return f" ({kind}, annotator {args.annotator})"


def make_edge_fn(args: argparse.Namespace) -> Optional[Callable[[BSDS500, str], np.ndarray]]:
    """``fn(dataset, image_id) -> pb`` float [H, W] in [0, 1]; None for --pred (files are read by make_items)."""
    if args.pred:
        return None
    if args.detector:
        from litesam_pl.evaluation.edges import DETECTORS, box_fill_maps, mask_edge_map

        if args.detector == "box-fill":
            def fill(ds: BSDS500, i: str) -> np.ndarray:
                shape = ds.boundaries(i)[0].shape
                maps = box_fill_maps(ds.region_boxes(i, args.annotator), shape)
                return mask_edge_map(maps, nms=not args.no_edge_nms, shape=shape)

            return fill
        det = DETECTORS[args.detector]
        kw = {} if args.sigma is None else {"sigma": args.sigma}
        return lambda ds, i: det(ds.image(i), **kw)
    from litesam_pl.evaluation.edges import edge_map_from_model

    model = load_edge_model(args)
    seg_kw = dict(prompts=args.prompts, points_per_side=args.points_per_side, box_nms_thresh=args.box_nms_thresh,
                  nms=args.nms)

    def fn(ds: BSDS500, i: str) -> np.ndarray:
        if args.prompts == "gt-boxes":
            return edge_map_from_model(model, ds.image(i), apply_edge_nms=not args.no_edge_nms,
                                       boxes=ds.region_boxes(i, args.annotator))
        return edge_map_from_model(model, ds.image(i), apply_edge_nms=not args.no_edge_nms, **seg_kw)

    return fn


def make_items(ds: BSDS500, args: argparse.Namespace, edge_fn,
               ids: Sequence[str]) -> Iterator[Tuple[str, object, List[np.ndarray]]]:
    """Lazily yield ``(image_id, pb, annotator boundaries)``; writes --save-edges pngs on the way."""
    pred_paths = ds.prediction_paths(args.pred, args.pred_format) if args.pred else None
    save_dir = Path(args.save_edges) if args.save_edges else None
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    for i in ids:
        pb = load_prediction(pred_paths[i], args.pred_format) if pred_paths else edge_fn(ds, i)
        if save_dir is not None and isinstance(pb, np.ndarray):
            import cv2

            cv2.imwrite(str(save_dir / f"{i}.png"), np.round(np.clip(pb, 0, 1) * 255).astype(np.uint8))
        yield i, pb, ds.boundaries(i)


def load_cached_counts(eval_dir: str, ids: Sequence[str], args: argparse.Namespace) -> Dict[str, BoundaryCounts]:
    """Counts of ``ids`` already in ``eval_dir`` (``<id>_ev1.txt``) at the thresholds of this run."""
    want = None if (args.pred and args.pred_format == "segs") else bsds_thresholds(args.thresholds)
    out = {}
    for i in ids:
        f = Path(eval_dir) / f"{i}_ev1.txt"
        if not f.is_file():
            continue
        c = BoundaryCounts.load(f)
        if want is not None and (c.thresholds.shape != want.shape or not np.allclose(c.thresholds, want)):
            raise ValueError(f"{f} was evaluated at {c.thresholds.size} other thresholds; use another --eval-dir")
        out[i] = c
    return out


def source_args(args: argparse.Namespace) -> Dict[str, argparse.Namespace]:
    """One argument set per edge source, keyed ``model`` (--ckpt / --model), ``pred``, ``sobel`` / ``canny``.

    The first is the given source, then each of --baselines as a --detector run with the same images,
    thresholds and matching settings. With more than one source, --eval-dir and --save-edges get a subfolder
    per key (each source's own cache); a single source uses them as given (the one-source CLI unchanged).
    """
    keys = [k for k in ("ckpt", "model", "detector", "pred") if getattr(args, k)]
    runs: Dict[str, argparse.Namespace] = {}
    if keys:
        runs[{"ckpt": "model", "model": "model", "detector": args.detector, "pred": "pred"}[keys[0]]] = args
    for det in args.baselines:
        runs[det] = argparse.Namespace(**{**vars(args), "ckpt": None, "model": None, "pred": None,
                                          "detector": det, "baselines": [],
                                          "name": args.name if not keys and len(args.baselines) == 1 else None})
    if len(runs) > 1:
        for key, a in runs.items():
            sub = {k: str(Path(getattr(a, k)) / key) for k in ("eval_dir", "save_edges") if getattr(a, k)}
            runs[key] = argparse.Namespace(**{**vars(a), **sub})
    return runs


def run_bsds(args: argparse.Namespace) -> Dict[str, object]:
    laps = Laps()
    ds = BSDS500(args.data, args.split, limit=args.limit)
    if source_reads_ground_truth(args):
        check_annotator(ds, args.annotator)
    cached = load_cached_counts(args.eval_dir, ds.ids, args) if args.eval_dir else {}
    todo = [i for i in ds.ids if i not in cached]
    if cached:
        print(f"{len(cached)} of {len(ds)} images already evaluated in {args.eval_dir}")
    save = None
    if args.eval_dir:
        Path(args.eval_dir).mkdir(parents=True, exist_ok=True)
        save = lambda i, c: c.save(Path(args.eval_dir) / f"{i}_ev1.txt")  # noqa: E731
    edge_fn = make_edge_fn(args) if todo else None
    name = method_name(args)
    per_image = evaluate_images(
        make_items(ds, args, edge_fn, todo),
        thresholds=args.thresholds,
        max_dist=args.max_dist,
        thin=not args.no_thin,
        matcher=args.matcher,
        workers=args.workers,
        progress=not args.no_progress,
        total=len(todo),
        on_result=save,
    ) if todo else {}
    per_image = {i: (per_image[i] if i in per_image else cached[i]) for i in ds.ids}
    res = summarize(per_image)
    wall = laps.lap()
    out = {
        "ods": res["ods"], "ois": res["ois"], "ap": res["ap"], "r50": res["r50"], "images": res["images"],
        "per_image": res["per_image"],
        "method": name,
        "ods_threshold": res["ods_threshold"], "ods_r": res["ods_r"], "ods_p": res["ods_p"],
        "ois_r": res["ois_r"], "ois_p": res["ois_p"],
        "curve": res["curve"],
        "config": {
            "data": str(args.data), "split": args.split, "limit": args.limit,
            "source": {k: getattr(args, k) for k in ("ckpt", "model", "detector", "pred") if getattr(args, k)},
            "pred_format": args.pred_format if args.pred else None,
            "thresholds": args.thresholds, "max_dist": args.max_dist, "thin": not args.no_thin,
            "matcher": args.matcher, "sigma": args.sigma, "workers": args.workers, "eval_dir": args.eval_dir,
            "segevery": None if not (args.ckpt or args.model) else {
                "prompts": args.prompts, "edge_nms": not args.no_edge_nms, "img_size": args.img_size,
                # the gt-boxes path has one prompt per region and no NMS: the proposal options do not apply
                **{k: None if args.prompts == "gt-boxes" else getattr(args, k)
                   for k in ("points_per_side", "box_nms_thresh", "nms")},
                "annotator": args.annotator if args.prompts == "gt-boxes" else None},
            "annotator": args.annotator if args.detector == "box-fill" else None,
        },
        "reads_ground_truth": source_reads_ground_truth(args),
        "wall_s": round(wall, 2),
    }
    return out


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """One source: its result dict (flat, as ever). Several (--baselines): ``{"sources": {key: result}, ...}``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    results, runs = {}, source_args(args)
    for key, a in runs.items():
        if len(runs) > 1:
            print(f"== edge source {key}: {method_name(a)}", flush=True)
        results[key] = run_bsds(a)
    first = next(iter(results.values()))
    if len(results) == 1:
        out = first
    else:
        out = {"sources": results, "methods": {k: r["method"] for k, r in results.items()},
               "images": first["images"], "thresholds": args.thresholds, "max_dist": args.max_dist,
               "reads_ground_truth": reads_ground_truth(args),
               "wall_s": round(sum(r["wall_s"] for r in results.values()), 2)}
        for k, r in results.items():
            if r["images"] != first["images"]:
                raise RuntimeError(f"source {k} scored {r['images']} images, not {first['images']}")
    pseg = args.pred and args.pred_format == "segs"
    n_thr = len(first["curve"]["thresholds"]) if pseg and not args.baselines else args.thresholds
    oracle = reads_ground_truth(args)
    print(format_edge_table(first["method"], first, n_thr, {r["method"]: r for r in list(results.values())[1:]},
                            oracle=oracle))
    for r in results.values():
        print(f"{r['method']}: ODS threshold {r['ods_threshold']:.4f} (R {r['ods_r']:.3f}, P {r['ods_p']:.3f}); "
              f"wall {r['wall_s']:.1f} s")
    if args.json:
        write_json(args.json, out)
        print(f"wrote {args.json}")
    if args.plot:
        curves = {}
        for extra in args.plot_with:
            with open(extra) as f:
                prev = json.load(f)
            for r in (prev["sources"].values() if "sources" in prev else [prev]):
                curves[r.get("method", Path(extra).stem)] = r
        curves.update({r["method"]: r for r in results.values()})
        plot_pr_curves(curves, args.plot)
        print(f"wrote {args.plot}")
    publish("bsds-oracle" if oracle else "bsds", out, images=[args.plot] if args.plot else [])
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
