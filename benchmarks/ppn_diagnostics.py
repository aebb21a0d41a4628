"""What AutoPPN does on SA-1B-format shards (docs/benchmarks.md, "Real photographs"): does its point map follow its
targets, and do the image embeddings it reads carry that information at all?

Each record goes through the validation ``SampleProcessor`` (no augmentation) at the model's input size and AutoPPN
stride, so the targets are exactly the ones training uses. Per size group (0 large, 1 medium, 2 small) over the
image cells (padding left out) it reports:

- ``target_mean`` / ``positive_share``: the mean point target and the share of cells whose target is > 0;
- ``pred_mean`` / ``pred_spatial_std``: AutoPPN's point confidence, and how much it varies within an image (mean over
  images of the per-image std): a map that does not vary cannot rank anything;
- ``pred_corr``: Pearson correlation of the confidence with the target, over all cells of all images;
- ``probe_corr``: the same for a ridge-regression probe from the image embedding (bilinearly upsampled to the
  AutoPPN grid) to the targets, fitted on the even-numbered images and scored on the odd ones: how much a
  linear read-out of the frozen features can say about where the targets are;
- ``top_on_target`` / ``chance_on_target``: the share of the ``--top-k`` highest cells of the group's map
  that fall on cells with a target > 0, and the share a random image cell has (the same as ``positive_share``,
  counted per image): precision that only equals chance means the ranking is uninformative (on BSDS every pixel
  lies in some region, so "a point inside some mask" is ~1 whatever the model does).

``--plot PATH`` draws the first ``--plot-images`` images beside each group's target and AutoPPN's confidence (one
colour scale, 0 to 1, padding cells grey), so one can see what the map does rather than read it.

    python -m benchmarks.ppn_diagnostics --shards data/real/shards/val --ckpt runs/real-smoke/litesam/last.ckpt \\
        --json results/ppn_diagnostics.json --plot results/ppn_diagnostics.png
"""
from __future__ import annotations

import argparse
import sys
from itertools import islice
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.toolkit.results import write_json

GROUP_NAMES = ("large", "medium", "small")


def records(urls: Sequence[str], limit: int | None) -> Iterator[Dict[str, Any]]:
    """Raw SA-1B records (``__key__``, image bytes, ``json``) of the shard ``urls``, in order, read as the training
    stream reads them (webdataset's tar expander and key grouping over ``shards.open_url``)."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    from litesam_pl.data.shards import open_url

    files = tar_file_expander({"url": u, "stream": open_url(u)} for u in urls)
    return islice(group_by_keys(files), limit)


def collect_maps(model: torch.nn.Module, urls: Sequence[str], limit: int | None, keep_maps: int = 0
            ) -> Dict[str, List[Any]]:
    """Per image: the targets, AutoPPN's confidences and the upsampled embedding at the image cells; for the first
    ``keep_maps`` images also ``maps``: (key, uint8 image, target ``[G, P, P]``, confidence ``[G, P, P]``, padding
    ``[P, P]``) for the plot."""
    from litesam_pl.data.sample_processor import SampleProcessor

    stride = int(model.autoppn.stride)
    proc = SampleProcessor(img_size=int(model.image_encoder.img_size), max_masks=1, ppn_stride=stride, train=False,
                           num_groups=int(model.autoppn.num_groups))
    out: Dict[str, List[Any]] = {"target": [], "pred": [], "feat": [], "maps": []}
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        for rec in records(urls, limit):
            s = proc(rec, rng)
            emb = model.image_encoder(model.preprocess(s["image"][None].float()))
            heat = model.autoppn(emb)["heatmap_logits"][0].float().sigmoid()
            feat = F.interpolate(emb.float(), size=heat.shape[-2:], mode="bilinear", align_corners=False)[0]
            keep = ~s["ppn_ignore"].numpy().reshape(-1)
            if len(out["maps"]) < keep_maps:
                h, w = (int(v) for v in s["input_size"])
                out["maps"].append((s["key"], s["image"][:, :h, :w].permute(1, 2, 0).numpy(), s["ppn_heatmap"].numpy(),
                                    heat.numpy(), s["ppn_ignore"].numpy()))
            out["target"].append(s["ppn_heatmap"].numpy().reshape(heat.shape[0], -1)[:, keep])
            out["pred"].append(heat.numpy().reshape(heat.shape[0], -1)[:, keep])
            out["feat"].append(feat.numpy().reshape(feat.shape[0], -1)[:, keep])
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")


def probe_corr(feat: List[np.ndarray], target: List[np.ndarray], ridge: float = 10.0) -> List[float]:
    """Held-out correlation per group of a ridge probe fitted on the even images, scored on the odd ones."""
    fit, test = range(0, len(feat), 2), range(1, len(feat), 2)
    if not len(test):
        return [float("nan")] * target[0].shape[0]
    x_fit = np.concatenate([feat[i].T for i in fit]).astype(np.float64)
    mu, sd = x_fit.mean(0), x_fit.std(0) + 1e-6
    design = lambda x: np.hstack([(x - mu) / sd, np.ones((len(x), 1))])  # noqa: E731
    z = design(x_fit)
    y = np.concatenate([target[i].T for i in fit])
    w = np.linalg.solve(z.T @ z + ridge * np.eye(z.shape[1]), z.T @ y)
    pred = design(np.concatenate([feat[i].T for i in test]).astype(np.float64)) @ w
    y_test = np.concatenate([target[i].T for i in test])
    return [_corr(pred[:, g], y_test[:, g]) for g in range(y_test.shape[1])]


def top_on_target(pred: np.ndarray, target: np.ndarray, k: int) -> float:
    """Share of the ``k`` highest cells of ``pred`` (one image, one group) whose target is > 0."""
    top = np.argsort(-pred, kind="stable")[:k]
    return float((target[top] > 0).mean()) if len(top) else float("nan")


def summarise_maps(data: Dict[str, List[np.ndarray]], top_k: int) -> Dict[str, Dict[str, float]]:
    groups = data["target"][0].shape[0]
    probe = probe_corr(data["feat"], data["target"])
    out: Dict[str, Dict[str, float]] = {}
    for g in range(groups):
        t = np.concatenate([x[g] for x in data["target"]])
        p = np.concatenate([x[g] for x in data["pred"]])
        name = GROUP_NAMES[g] if groups == len(GROUP_NAMES) else f"group{g}"
        r = lambda v: round(float(v), 4)  # noqa: E731
        out[name] = {
            "target_mean": r(t.mean()), "positive_share": r((t > 0).mean()), "pred_mean": r(p.mean()),
            "pred_spatial_std": r(np.mean([x[g].std() for x in data["pred"]])),
            "pred_corr": r(_corr(p, t)), "probe_corr": r(probe[g]),
            "top_on_target": r(np.nanmean([top_on_target(x[g], y[g], top_k)
                                           for x, y in zip(data["pred"], data["target"])])),
            "chance_on_target": r(np.mean([(y[g] > 0).mean() for y in data["target"]])),
        }
    return out


def plot_maps(maps: Sequence[tuple], path: str) -> None:
    """One row per image: the photo, then each group's target and AutoPPN's confidence on one 0-1 colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = maps[0][2].shape[0]
    names = GROUP_NAMES if groups == len(GROUP_NAMES) else [f"group{g}" for g in range(groups)]
    fig, axes = plt.subplots(len(maps), 1 + 2 * groups, figsize=(2.2 * (1 + 2 * groups), 2.2 * len(maps)), dpi=100,
                             squeeze=False)
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.6")
    for row, (key, image, target, pred, pad) in zip(axes, maps):
        row[0].imshow(image)
        row[0].set_title(str(key), fontsize=7)
        for g in range(groups):
            for col, (what, arr) in enumerate((("target", target), ("AutoPPN", pred))):
                ax = row[1 + 2 * g + col]
                ax.imshow(np.ma.masked_where(pad, arr[g]), cmap=cmap, vmin=0, vmax=1)
                ax.set_title(f"{names[g]}: {what}", fontsize=7)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description="What AutoPPN does on shards (see the module docstring).")
    p.add_argument("--shards", nargs="+", required=True, help="shard folder(s) or tar paths (data.val_shards form)")
    p.add_argument("--ckpt", default=None, help="checkpoint or export (default: a seeded random litesam)")
    p.add_argument("--img-size", type=int, default=None, help="run the weights at this input size")
    p.add_argument("--limit", type=int, default=None, help="first N records")
    p.add_argument("--top-k", type=int, default=10, help="highest cells per image and group for top_on_target")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None, help="PNG of the first images' targets and AutoPPN maps")
    p.add_argument("--plot-images", type=int, default=3, help="images in the plot")
    a = p.parse_args(argv)
    from benchmarks.box_diagnostics import load_diagnosed_model
    from litesam_pl.data.shards import ShardsError, expand_urls

    try:
        urls = expand_urls(a.shards)
    except ShardsError as e:
        p.error(str(e))
    torch.manual_seed(0)
    model = load_diagnosed_model(a.ckpt, a.img_size)
    if getattr(model, "autoppn", None) is None:
        p.error(f"{a.ckpt}: this model has no AutoPPN head (a backbone-stage checkpoint?)")
    data = collect_maps(model, urls, a.limit, keep_maps=a.plot_images if a.plot else 0)
    if not data["target"]:
        p.error(f"no records in {a.shards}")
    res = {"ckpt": a.ckpt, "img_size": int(model.image_encoder.img_size), "images": len(data["target"]),
           "top_k": a.top_k, "groups": summarise_maps(data, a.top_k)}
    for name, g in res["groups"].items():
        print(name, " ".join(f"{k}={v}" for k, v in g.items()))
    if a.json:
        write_json(a.json, res)
    if a.plot:
        plot_maps(data["maps"], a.plot)
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
