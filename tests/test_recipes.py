"""Recipes are paper bases plus overlays: every overlay changes only what it is allowed to.

The three base recipes (``recipes/{backbone_1box,autoppn,litesam}.yaml``) are the paper's set-up plus our choices,
marked as such. Every other recipe is an overlay that goes on top of one base with a second ``--config``
(``litesam fit --config <base> --config <overlay>``; the base is named on the overlay's ``# base:`` line):

* smoke / demo overlays (``recipes/smoke/*.yaml``) may change only scale: ``ALLOWED_SCALE`` below;
* ablation overlays (Table 1 mixers, Table 2 AutoPPN switches, r1024 / 2x / 3x) may change scale and their own
  switches (``SWITCHES``).

Each stack is resolved the way a user sees it, ``litesam fit --config ... --print_config`` (in-process: the CLI
parses and prints without building a model), flattened to dotted keys and compared with the base alone.
"""
from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Tuple
from unittest import mock

import pytest
import yaml

from benchmarks import table2
from litesam_pl import cli
from litesam_pl.cli.config import linked_value_set_by_user, point_loss_for
from tests.helpers import BASES, REPO, base_of, stack

RECIPES = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "recipes").rglob("*.yaml"))
OVERLAYS = [r for r in RECIPES if r not in BASES]

# What an overlay may change, as dotted keys of the resolved config (fnmatch patterns). Lists (loggers, callbacks,
# shards) are compared as a whole: an overlay's list replaces the base's.
ALLOWED_SCALE = {
    # data: where the shards are and how much of them is read
    "data.train_shards", "data.val_shards", "data.epoch_samples", "data.shuffle_buffer", "data.resampled",
    "data.max_masks", "data.val_max_masks",
    # image size (set once, in data: the CLI links it into the model)
    "data.img_size",
    # SAM's box-noise clip (20 px at 1024) scaled to the input side
    "data.box_noise_max",
    # batch size and loading, prompts per image in training
    "data.batch_size", "data.val_batch_size", "data.num_workers", "model.init_args.prompts.max_per_image",
    # schedule length and validation cadence
    "trainer.max_epochs", "trainer.max_steps", "trainer.val_check_interval", "trainer.check_val_every_n_epoch",
    "trainer.num_sanity_val_steps",
    # learning rate, warm-up and schedule (the optimizer's class and the schedule's stay the base's)
    "model.init_args.optimizer.init_args.lr", "model.init_args.lr_scheduler.init_args.warmup_steps",
    "model.init_args.lr_scheduler.init_args.schedule", "model.init_args.lr_scheduler.init_args.min_lr_ratio",
    # hardware and numerics
    "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.strategy", "trainer.precision",
    # stage chaining: warm start and freezing
    "model.init_args.init_from", "model.init_args.freeze_encoder",
    # caches
    "model.init_args.embedding_cache_mb",
    # logging and checkpoint cadence (ModelCheckpoint, ImageLogger cadence, CPUThreads are in the callbacks list)
    "trainer.log_every_n_steps", "trainer.enable_progress_bar", "trainer.logger", "trainer.callbacks",
    # evaluation cost
    "model.init_args.validation.compute_map", "model.init_args.validation.top_n",
    # run directory (the loggers' and checkpoints' save dirs are in the lists above)
    "trainer.default_root_dir",
}
# callbacks an overlay may add to the base's (the base's own callbacks must all stay)
EXTRA_CALLBACKS = {"litesam_pl.modules.callbacks.CPUThreads"}

# ablation overlays: the switches each family may change besides scale (one setting per switch: the model's AutoPPN
# groups and the point loss follow data.num_groups and data.target_mode through the CLI's links)
TABLE2_SWITCHES = {"model.init_args.model.kwargs.ppn_stem", "data.target_mode", "data.num_groups"}
SWITCHES = {
    "recipes/ablations/table1/*.yaml": {"model.init_args.model.kwargs.mixer"},  # Fig. 3 token mixer
    "recipes/ablations/table2/*.yaml": TABLE2_SWITCHES,  # stem, GT & loss, grouping
    "recipes/litesam_2x.yaml": {"model.init_args.model.name"},  # LiteViT width
    "recipes/litesam_3x.yaml": {"model.init_args.model.name"},
    "recipes/litesam_r1024.yaml": set(),  # 1024 px: scale only
    # real photos at CPU scale: boxes also as dense mask prompts (models/prompt_encoder.py)
    "recipes/real/*.yaml": {"model.init_args.model.kwargs.box_mask_prompt"},
}

# loss settings (dotted keys under model.init_args): they live once, as the defaults of the loss parts
# (litesam_pl/modules/config.py); a recipe writes one only to change it
LOSS_KEYS = (*(f"mask_loss.{k}" for k in ("focal_weight", "dice_weight", "iou_weight", "focal_alpha", "focal_gamma",
                                          "min_train_mask_area", "resolution", "points", "weight")),
             *(f"ppn_loss.{k}" for k in ("heatmap_weight", "box_weight", "point_loss", "neg_ratio", "box_beta",
                                         "box_unit", "box_weighting", "weight")),
             "prompts.point_weight", "prompts.box_weight", "prompt_split")


@lru_cache(maxsize=None)
def resolve(*args: str) -> Dict[str, Any]:
    """``litesam fit <args> --print_config``, in-process, as a dict (configs relative to the repo)."""
    buf = io.StringIO()
    with contextlib.chdir(REPO), contextlib.redirect_stdout(buf), mock.patch.object(sys, "argv", ["litesam"]):
        with pytest.raises(SystemExit) as e:
            cli.run_lightning_cli(["fit", *args, "--print_config"])
    assert not e.value.code, f"litesam fit {' '.join(args)} --print_config failed (exit {e.value.code})"
    return yaml.safe_load(buf.getvalue())


def resolve_configs(*configs: str) -> Dict[str, Any]:
    return resolve(*[a for c in configs for a in ("--config", c)])


def flatten(d: Any, prefix: str = "") -> Dict[str, Any]:
    """Nested dicts -> ``{"a.b.c": value}``; lists are leaves, empty dicts add no key (``model.kwargs: {}`` and a
    filled ``model.kwargs`` differ only in the keys that are set)."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: Dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


_MISSING = "<unset>"


def differences(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Tuple[Any, Any]]:
    fa, fb = flatten(a), flatten(b)
    return {k: (fa.get(k, _MISSING), fb.get(k, _MISSING)) for k in sorted(set(fa) | set(fb))
            if fa.get(k, _MISSING) != fb.get(k, _MISSING)}


def disallowed(diff: Dict[str, Tuple[Any, Any]], allowed: set) -> Dict[str, Tuple[Any, Any]]:
    return {k: v for k, v in diff.items() if not any(fnmatch.fnmatchcase(k, pat) for pat in allowed)}


def switches_for(recipe: str) -> set:
    for pattern, keys in SWITCHES.items():
        if fnmatch.fnmatchcase(recipe, pattern):
            return keys
    return set()


def _report(title: str, bad: Dict[str, Tuple[Any, Any]]) -> str:
    return title + "\n" + "\n".join(f"  {k}: {a!r} -> {b!r}" for k, (a, b) in bad.items())


def _callback_classes(cfg: Dict[str, Any]) -> list:
    return [c["class_path"] for c in (cfg["trainer"].get("callbacks") or [])]


# ------------------------------------------------------------------------------------------------------------------
def test_every_overlay_names_a_base():
    assert set(BASES) <= set(RECIPES)
    for recipe in OVERLAYS:
        assert base_of(recipe) in BASES, f"{recipe}: '# base: {base_of(recipe)}' is not one of {BASES}"
    # the pairs the brief names
    assert base_of("recipes/smoke/demo.yaml") == "recipes/litesam.yaml"
    for name in ("backbone_1box", "autoppn", "litesam"):
        assert base_of(f"recipes/smoke/{name}.yaml") == f"recipes/{name}.yaml"
    assert {base_of(r) for r in OVERLAYS if "/table1/" in r} == {"recipes/backbone_1box.yaml"}
    assert {base_of(r) for r in OVERLAYS if "/table2/" in r} == {"recipes/autoppn.yaml"}
    assert len([r for r in OVERLAYS if "/table2/" in r]) == 8


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.split("recipes/")[-1])
def test_recipe_parses(recipe):
    """Every recipe resolves (on its base) and its data and model image sizes agree: the image size and the AutoPPN
    size groups are set once, in data (the CLI links them into the model; test_smoke_stacks_instantiate checks the
    built model), never in the model's kwargs."""
    cfg = resolve_configs(*stack(recipe))
    init = cfg["model"]["init_args"]
    assert cfg["model"]["class_path"].startswith("litesam_pl.modules.")
    kwargs = init["model"].get("kwargs") or {}
    assert "img_size" not in kwargs and "img_size" not in init["model"]
    if kwargs.get("autoppn", True):  # AutoPPN size groups: data and model agree
        assert "ppn_groups" not in kwargs and "ppn_groups" not in init["model"]
    assert "point_loss" not in init["ppn_loss"]  # follows data.target_mode
    with contextlib.chdir(REPO):  # nor does any file of the stack set a linked value (print_config hides them)
        assert linked_value_set_by_user(stack(recipe), []) is None


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda r: r.split("recipes/")[-1])
def test_overlay_changes_only_allowed_keys(overlay):
    base = base_of(overlay)
    alone, on_top = resolve_configs(base), resolve_configs(base, overlay)
    switches = switches_for(overlay)
    bad = disallowed(differences(alone, on_top), ALLOWED_SCALE | switches)
    assert not bad, _report(f"{overlay} on {base} changes keys outside the allow-list:", bad)
    assert on_top["model"]["class_path"] == alone["model"]["class_path"]
    # the overlay keeps every callback of the base (safety nets, metrics.json) and adds only cadence helpers
    base_cbs, cbs = _callback_classes(alone), _callback_classes(on_top)
    assert set(base_cbs) <= set(cbs), f"{overlay} drops callbacks {set(base_cbs) - set(cbs)}"
    assert set(cbs) - set(base_cbs) <= EXTRA_CALLBACKS
    # an ablation sets its switches (not by accident the base's values only)
    if "/table2/" in overlay:
        stem, gt, groups = re.match(r".*stem-(\w+)_gt-(\w+)_groups-(\d)\.yaml", overlay).groups()
        kw = on_top["model"]["init_args"]["model"]["kwargs"]
        assert (kw["ppn_stem"], on_top["data"]["num_groups"]) == (stem, int(groups))  # model.ppn_groups: linked
        assert on_top["data"]["target_mode"] == gt
        assert point_loss_for(on_top["data"]["target_mode"]) == ("hard_mse" if gt == "distance" else "focal")
    if "/real/" in overlay:
        assert on_top["model"]["init_args"]["model"]["kwargs"]["box_mask_prompt"] is True
    if "/table1/" in overlay:
        assert on_top["model"]["init_args"]["model"]["kwargs"]["mixer"] in overlay
    # the overlay's run directory is its own: no checkpoint or log of the base run is overwritten
    if on_top["trainer"]["default_root_dir"] != alone["trainer"]["default_root_dir"]:
        run = on_top["trainer"]["default_root_dir"]
        old = re.compile(r"(?<![\w/.-])" + re.escape(alone["trainer"]["default_root_dir"]) + r"(?![\w.-])")
        assert not old.search(json.dumps(on_top["trainer"])), f"{overlay} still writes into the base's run dir"
        assert run in json.dumps(on_top["trainer"]["callbacks"]) and run in json.dumps(on_top["trainer"]["logger"])


def test_smoke_overlays_are_scale_only():
    """recipes/smoke/* (smoke and demo) may not change even an ablation switch."""
    for overlay in (r for r in OVERLAYS if r.startswith("recipes/smoke/")):
        assert not switches_for(overlay)
        base = base_of(overlay)
        bad = disallowed(differences(resolve_configs(base), resolve_configs(base, overlay)), ALLOWED_SCALE)
        assert not bad, _report(overlay, bad)


def test_paper_facts_and_one_loss_setting_per_key():
    """The bases carry the paper's numbers; the loss settings live once, as the loss parts' defaults: every base
    resolves to them and none restates one."""
    from litesam_pl.modules.config import MaskLossConfig, PPNLossConfig, PromptConfig

    raw = {b: yaml.safe_load((REPO / b).read_text()) for b in BASES}
    defaults = flatten({"mask_loss": vars(MaskLossConfig()), "ppn_loss": vars(PPNLossConfig()),
                        "prompts": vars(PromptConfig())})
    for b in BASES:
        cfg = resolve_configs(b)
        init, tr, data = cfg["model"]["init_args"], cfg["trainer"], cfg["data"]
        assert init["optimizer"]["class_path"] == "torch.optim.Adam" and tr["max_epochs"] == 4
        assert init["optimizer"]["init_args"]["lr"] == pytest.approx(4e-5) and data["img_size"] == 640
        assert init["optimizer"]["init_args"]["betas"] == [0.9, 0.999]  # Adam's
        assert init["optimizer"]["init_args"]["weight_decay"] == 0
        sched = init["lr_scheduler"]  # constant (the paper states no schedule): an overlay's init_args change it
        assert sched["class_path"] == "litesam_pl.modules.schedules.WarmupCosine"
        assert (sched["init_args"]["schedule"], sched["init_args"]["warmup_steps"]) == ("constant", 0)
        assert tr["num_nodes"] * tr["devices"] * data["batch_size"] == 256
        ml, pl_ = init["mask_loss"], init["ppn_loss"]
        assert ml["focal_weight"] / ml["dice_weight"] == pytest.approx(10.0)  # paper: focal:dice 10:1
        assert pl_["heatmap_weight"] / pl_["box_weight"] == pytest.approx(2.0)  # paper: H-MSE:S-L1 2:1
        assert point_loss_for(data["target_mode"]) == "hard_mse"  # the point loss follows the targets
        assert data["num_groups"] == 3
        # every stage trains with the loss parts' defaults (point_loss: linked from data.target_mode, checked above)
        keys = set(LOSS_KEYS) - {"prompt_split", "ppn_loss.point_loss"}
        resolved = {k: v for k, v in flatten(init).items() if k in keys}
        assert resolved == {k: v for k, v in defaults.items() if k in keys}, b
        # ... which no base writes again (a recipe writes a loss field only to change it)
        written = [k for k in flatten(raw[b]["model"]["init_args"]) if k in LOSS_KEYS and k != "prompt_split"]
        assert not written, f"{b} restates the loss parts' defaults {written}: they live in modules/config.py"
        # the paper's targets (and so the point loss) are written in each base, not left to code defaults
        assert {k: raw[b]["data"].get(k) for k in ("target_mode", "num_groups")} == {"target_mode": "distance",
                                                                                     "num_groups": 3}, b
    # the paper's ratios and our choices (litesam_pl/modules/config.py marks which is which)
    assert (defaults["mask_loss.focal_weight"], defaults["mask_loss.dice_weight"]) == (10.0, 1.0)
    assert (defaults["ppn_loss.heatmap_weight"], defaults["ppn_loss.box_weight"]) == (2.0, 1.0)
    assert defaults["mask_loss.focal_alpha"] < 0 and defaults["mask_loss.min_train_mask_area"] == 0
    assert (defaults["ppn_loss.box_unit"], defaults["ppn_loss.box_weighting"]) == ("box", "centerness")
    assert defaults["ppn_loss.box_beta"] == pytest.approx(1 / 9)
    assert "prompt_split" in raw["recipes/litesam.yaml"]["model"]["init_args"]  # joint stage only


@pytest.mark.parametrize("configs", [
    *[(base_of(r), r) for r in OVERLAYS if r.startswith("recipes/smoke/")],
    (table2.BASE, f"{table2.COMBO_DIR}/stem-conv_gt-gaussian_groups-1.yaml", table2.SCALE),
], ids=lambda c: "+".join(Path(x).stem for x in c))
def test_smoke_stacks_instantiate(configs, tmp_path):
    """The smoke-scale stacks build their module, data module and trainer with the base's loss settings."""
    args = [a for c in configs for a in ("--config", c)]
    with contextlib.chdir(REPO), mock.patch.object(sys, "argv", ["litesam"]):
        c = cli.run_lightning_cli([*args, "--model.init_args.init_from", "null", "--trainer.logger", "false",
                                   "--trainer.default_root_dir", str(tmp_path)], run=False)
    assert c.model.img_size == c.datamodule.img_size
    if c.model.has_ppn:  # the links: AutoPPN groups and point loss follow the data
        assert c.model.model.autoppn.num_groups == c.datamodule.num_groups
        assert c.model.cfg.ppn_loss.point_loss == point_loss_for(c.datamodule.hparams["target_mode"])
    unscaled = flatten(resolve_configs(*configs[:-1])["model"]["init_args"])  # the stack without its scale overlay
    hparams = flatten(dict(c.model.hparams))
    for key in LOSS_KEYS:
        if key in unscaled:
            assert hparams[key] == unscaled[key], key


def _comments(text: str):
    for line in text.splitlines():
        if "#" in line:
            yield line[line.index("#") + 1:].strip()


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.split("recipes/")[-1])
def test_no_recipe_credits_the_paper_with_bf16(recipe):
    """The paper names no precision: bf16 is our choice and a recipe comment must say so."""
    for comment in _comments((REPO / recipe).read_text()):
        if re.search(r"bf16|bfloat16|mixed precision", comment, re.I):
            assert "our choice" in comment.lower(), f"{recipe}: '# {comment}' does not mark bf16 as our choice"
            assert not re.search(r"paper(?!\s+names\s+no)[^;]*\b(bf16|bfloat16|mixed precision)", comment, re.I), \
                f"{recipe}: '# {comment}' credits the paper with bf16"
    cfg = yaml.safe_load((REPO / recipe).read_text())
    precision = (cfg.get("trainer") or {}).get("precision")
    if precision and "bf16" in str(precision):
        line = next(l for l in (REPO / recipe).read_text().splitlines() if l.strip().startswith("precision:"))
        assert "our choice" in line, f"{recipe}: mark `precision: {precision}` as our choice"


def test_makefile_applies_smoke_overlays_on_their_base():
    text = (REPO / "Makefile").read_text()
    for m in re.finditer(r"--config (recipes/smoke/\w+\.yaml)", text):
        before = text[:m.start()].rstrip().split()
        assert before[-2:] == ["--config", base_of(m.group(1))], f"Makefile: {m.group(1)} not on its base"
    assert "DEMO_SCRATCH" not in text


# ------------------------------------------------------------------------------------------------------------------
# benchmarks/table2.py


@pytest.mark.parametrize("combo", table2.COMBOS, ids=table2.combo_name)
def test_table2_smoke_stack_is_the_combination_at_smoke_scale(combo, tmp_path):
    """table2.py's stack = the combination (base + its overlay) with only scale changed, in its own run dir."""
    run_dir = (tmp_path / table2.combo_name(combo)).as_posix()
    Path(run_dir).mkdir()
    (Path(run_dir) / "run.yaml").write_text(yaml.safe_dump(table2.run_overlay(combo, run_dir)))
    args = table2.fit_args(combo, run_dir)
    assert args[:9] == ["fit", "--config", table2.BASE, "--config", f"{table2.COMBO_DIR}/{table2.combo_name(combo)}.yaml",
                        "--config", table2.SCALE, "--config", f"{run_dir}/run.yaml"]
    got = resolve(*args[1:])
    full = resolve_configs(table2.BASE, f"{table2.COMBO_DIR}/{table2.combo_name(combo)}.yaml")
    bad = disallowed(differences(full, got), ALLOWED_SCALE)
    assert not bad, _report(f"table2 {table2.combo_name(combo)} at smoke scale changes non-scale keys:", bad)
    smoke = resolve_configs(table2.BASE, table2.SCALE)
    bad = disallowed(differences(smoke, got), TABLE2_SWITCHES | {"trainer.default_root_dir", "trainer.logger",
                                                                  "trainer.callbacks"})
    assert not bad, _report("differs from the smoke AutoPPN run beyond the Table 2 switches:", bad)
    kw = got["model"]["init_args"]["model"]["kwargs"]
    stem, gt, groups = combo
    assert (kw["ppn_stem"], got["data"]["target_mode"], got["data"]["num_groups"]) == (stem, gt, groups)
    assert "img_size" not in kw and got["data"]["img_size"] == smoke["data"]["img_size"]
    assert got["trainer"]["default_root_dir"] == run_dir
    assert table2.SMOKE_RUN not in json.dumps(got["trainer"]), "a table2 run would write into runs/smoke/autoppn"
    if combo == table2.COMBOS[0]:  # --steps: one epoch of exactly N steps, validated at its end
        quick = resolve(*table2.fit_args(combo, run_dir, steps=2)[1:])
        assert quick["trainer"]["max_steps"] == 2 and quick["trainer"]["max_epochs"] == 1
        assert quick["trainer"]["check_val_every_n_epoch"] == 1
        assert quick["data"]["epoch_samples"] == 2 * quick["data"]["batch_size"]
