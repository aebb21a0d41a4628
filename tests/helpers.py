"""Helpers shared by several test modules (plain functions and constants; the fixtures are in ``conftest.py``).

Import them as ``from tests.helpers import ...``: ``tests`` is a package (``tests/__init__.py``, one in each
subfolder too, so ``tests/benchmarks`` is ``tests.benchmarks`` and never shadows the repository's ``benchmarks``).
Test modules do not import each other; what two of them share lives here.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Optional, Tuple

import torch

REPO = Path(__file__).resolve().parents[1]
"""The repository root (recipes/, README.md, Makefile, benchmarks/, data_prep/, examples/)."""
SHARED = Path(os.environ.get("LITESAM_SHARED", REPO.parent / "shared"))
"""The shared data samples beside the checkout (``$LITESAM_SHARED`` overrides); the ``shared_data`` fixture."""

# --------------------------------------------------------------------------------------- tiny batches and Trainers
S = 64  # tiny images keep the module tests fast
TINY = {"img_size": S}  # model kwargs of a tiny Lite-SAM


def fake_batch(B: int = 2, K: int = 3, S: int = S, G: int = 3, stride: int = 8, seed: int = 0) -> dict:
    """A batch following docs/contracts.md with rectangle masks."""
    g = torch.Generator().manual_seed(seed)
    P = S // stride
    masks = torch.zeros(B, K, S, S, dtype=torch.bool)
    boxes = torch.zeros(B, K, 4)
    points = torch.zeros(B, K, 1, 2)
    for b in range(B):
        for k in range(K):
            x0, y0 = torch.randint(0, S // 2, (2,), generator=g).tolist()
            w, h = torch.randint(8, S // 2, (2,), generator=g).tolist()
            masks[b, k, y0 : y0 + h, x0 : x0 + w] = True
            boxes[b, k] = torch.tensor([x0, y0, x0 + w, y0 + h], dtype=torch.float)
            points[b, k, 0] = torch.tensor([x0 + w / 2, y0 + h / 2])
    heat = torch.rand(B, G, P, P, generator=g) * (torch.rand(B, G, P, P, generator=g) > 0.7)
    valid = torch.ones(B, K, dtype=torch.bool)
    valid[-1, -1] = False  # one padding row
    return {
        "image": torch.randn(B, 3, S, S, generator=g),
        "masks": masks,
        "boxes": boxes,
        "gt_boxes": boxes.clone(),
        "points": points,
        "point_labels": torch.ones(B, K, 1, dtype=torch.long),
        "valid": valid,
        "ppn_heatmap": heat,
        "ppn_boxes": torch.rand(B, G, 4, P, P, generator=g) * 0.2,
        "ppn_box_weight": (heat > 0).float(),
        "ppn_ignore": torch.zeros(B, P, P, dtype=torch.bool),
        "all_boxes": [boxes[b] for b in range(B)],
        "original_size": torch.full((B, 2), S),
        "input_size": torch.full((B, 2), S),
        "key": [f"k{b}" for b in range(B)],
        "num_skipped": torch.zeros(B, dtype=torch.long),
    }


class FakeBatches(torch.utils.data.Dataset):
    """``n`` ready-made :func:`fake_batch` batches (seeds 0..n-1)."""

    def __init__(self, n: int = 2):
        self.batches = [fake_batch(seed=i) for i in range(n)]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict:
        return self.batches[i]


def batch_loader(n: int = 2) -> torch.utils.data.DataLoader:
    """A DataLoader over ``n`` :func:`fake_batch` batches (already batched: ``batch_size=None``)."""
    return torch.utils.data.DataLoader(FakeBatches(n), batch_size=None)


def cpu_trainer(tmp_path, **kw):
    """A quiet 1-CPU Lightning Trainer, 2 steps, no logger / checkpoints / sanity check (``kw`` overrides)."""
    import lightning.pytorch as pl

    args = dict(
        accelerator="cpu", devices=1, max_steps=2, logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(tmp_path),
        enable_checkpointing=False,
    )
    args.update(kw)
    return pl.Trainer(**args)


# --------------------------------------------------------------------------------------- recipes and the CLI
BASES = ("recipes/backbone_1box.yaml", "recipes/autoppn.yaml", "recipes/litesam.yaml")
"""The three paper base recipes; every other recipe is an overlay naming one of them (``# base:`` header line)."""

# hardware / shard overrides so that every recipe instantiates on this CPU machine
LOCAL = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.num_nodes", "1", "--trainer.strategy", "auto",
         "--trainer.logger", "false", "--trainer.precision", "32-true"]


def base_of(recipe: str) -> Optional[str]:
    """The base recipe named on an overlay's ``# base:`` header line (None for a base)."""
    if recipe in BASES:
        return None
    for line in (REPO / recipe).read_text().splitlines():
        m = re.match(r"#\s*base:\s*(\S+)", line)
        if m:
            return m.group(1)
    raise AssertionError(f"{recipe}: no '# base: recipes/<base>.yaml' header line")


def stack(recipe: str) -> Tuple[str, ...]:
    """The config files a user passes for ``recipe``: ``(base, overlay)`` for an overlay, ``(base,)`` for a base."""
    return (recipe,) if recipe in BASES else (base_of(recipe), recipe)


def recipe_configs(recipe: str) -> list:
    """``--config <base> --config <overlay>`` for an overlay, ``--config <base>`` for a base."""
    return [a for r in stack(recipe) for a in ("--config", r)]


# --------------------------------------------------------------------------------------- litesam predict
def write_predict_ckpt(shard: str, out_dir: Path, img_size: int = S) -> Path:
    """A tiny ``LiteSAMModule`` checkpoint as ``litesam fit`` writes it (``_class_path`` set), after one test batch
    of ``shard``; the ``predict_ckpt`` fixture."""
    from litesam_pl.data.datamodule import SA1BDataModule
    from litesam_pl.modules import LiteSAMModule
    from litesam_pl.modules.config import ModelSpec, ValidationConfig

    torch.manual_seed(0)
    module = LiteSAMModule(model=ModelSpec(kwargs={"img_size": img_size}), validation=ValidationConfig(top_n=100))
    dm = SA1BDataModule(img_size=img_size, batch_size=2, num_workers=0, max_masks=2, val_max_masks=8,
                        pin_memory=False, test_shards=shard)
    import lightning.pytorch as pl

    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(out_dir), enable_checkpointing=False,
                         limit_test_batches=1)
    trainer.test(module, datamodule=dm, verbose=False)
    ckpt = out_dir / "x.ckpt"
    trainer.save_checkpoint(ckpt)
    blob = torch.load(ckpt, map_location="cpu", weights_only=False)
    blob["hyper_parameters"]["_class_path"] = "litesam_pl.modules.LiteSAMModule"
    torch.save(blob, ckpt)
    return ckpt


def predict_args(tar: str, ckpt: Path, root: Path, img_size: int = S) -> list:
    """``litesam predict`` on the smoke recipe at ``img_size`` px, runnable from any working directory (absolute
    recipe paths)."""
    configs = [str(REPO / a) if a.endswith(".yaml") else a for a in recipe_configs("recipes/smoke/litesam.yaml")]
    return ["predict", *configs, *LOCAL, "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar",
            "false", "--trainer.callbacks", json.dumps([]), "--model.init_args.init_from", "null",
            "--data.img_size", str(img_size),
            "--data.batch_size", "2", "--data.val_batch_size", "2", "--data.num_workers", "0",
            "--data.val_shards", "null", "--data.predict_shards", tar, "--ckpt_path", str(ckpt)]


# --------------------------------------------------------------------------------------- a tiny SAM
def tiny_sam():
    """A seeded SAM (``segment_anything.modeling.Sam``) at 64 px with a one-layer stand-in image encoder and a
    one-block two-way transformer: SAM's own prompt encoder and mask decoder, in milliseconds."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
    from torch import nn

    class TinyEncoder(nn.Module):
        img_size = 64

        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Conv2d(3, 256, kernel_size=16, stride=16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x)

    torch.manual_seed(0)
    return Sam(
        image_encoder=TinyEncoder(),
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(4, 4), input_image_size=(64, 64),
                                     mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer_dim=256, iou_head_depth=3,
                                 iou_head_hidden_dim=32,
                                 transformer=TwoWayTransformer(depth=1, embedding_dim=256, mlp_dim=64, num_heads=8)),
    ).eval()
