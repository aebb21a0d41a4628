"""``litesam test`` and ``litesam predict`` (issue 13, point 7): the data module's test/predict loaders (test_shards,
predict_shards, their defaults) and the module's test metrics and SegEvery predictions, on tiny synthetic shards."""
from __future__ import annotations

import json
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from litesam_pl import cli
from litesam_pl.data.datamodule import SA1BDataModule
from litesam_pl.modules import BackboneBoxModule, LiteSAMModule
from test_cli import LOCAL, _configs

REPO = Path(__file__).resolve().parents[1]
S = 64
TEST_METRICS = ("test/miou_1box", "test/miou_1point", "test/map", "test/map_50", "test/loss_mask_box", "test/loss_ppn",
                "test/ar100", "test/ar1000", "test/box_ar100", "test/box_ar1000", "test/point_precision",
                "test/point_hit_rate")


def _dm(**kw) -> SA1BDataModule:
    args = dict(img_size=S, batch_size=2, num_workers=0, max_masks=2, val_max_masks=8, pin_memory=False)
    args.update(kw)
    return SA1BDataModule(**args)


def _trainer(tmp_path, **kw) -> pl.Trainer:
    args = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                default_root_dir=str(tmp_path), enable_checkpointing=False)
    args.update(kw)
    return pl.Trainer(**args)


def _keys(loader) -> list:
    return [k for batch in loader for k in batch["key"]]


def test_test_shards_default_to_val_shards(synthetic_sa1b):
    tars = sorted(str(p) for p in synthetic_sa1b.glob("*.tar"))
    assert len(tars) == 3
    dm = _dm(val_shards=tars[0])
    assert dm.test_shards is None and dm.test_source == tars[0] and dm.predict_source == tars[0]
    val_keys = _keys(dm.val_dataloader())
    assert len(val_keys) == 4
    assert _keys(dm.test_dataloader()) == val_keys  # same shards, same order
    assert _keys(dm.predict_dataloader()) == val_keys
    own = _dm(val_shards=tars[0], test_shards=tars[1:])
    test_keys = _keys(own.test_dataloader())
    assert len(test_keys) == 8 and not set(test_keys) & set(val_keys)
    assert _keys(own.predict_dataloader()) == test_keys  # predict: test_shards when predict_shards is unset
    both = _dm(val_shards=tars[0], test_shards=tars[1], predict_shards=tars[2])
    assert not set(_keys(both.predict_dataloader())) & set(_keys(both.test_dataloader()))
    # test batches are validation batches: no augmentation, deterministic prompts, val_max_masks
    b_val = next(iter(dm.val_dataloader()))
    b_test = next(iter(dm.test_dataloader()))
    for k in ("image", "masks", "boxes", "points", "valid"):
        torch.testing.assert_close(b_test[k], b_val[k])
    assert b_test["masks"].shape[1] == 8
    assert dm.test_counter.name == "test" and dm.num_skipped == 0
    with pytest.raises(ValueError, match="test_shards"):
        _dm().setup("test")
    with pytest.raises(ValueError, match="predict_shards"):
        _dm().setup("predict")


def test_trainer_test_logs_finite_test_metrics(synthetic_sa1b, tmp_path):
    torch.manual_seed(0)
    tars = sorted(str(p) for p in synthetic_sa1b.glob("*.tar"))
    module = LiteSAMModule(model_kwargs={"img_size": S}, val_top_n=100)
    dm = _dm(val_shards=tars[1], test_shards=tars[0])
    out = _trainer(tmp_path).test(module, datamodule=dm)
    assert len(out) == 1
    metrics = out[0]
    for name in TEST_METRICS:
        assert name in metrics, name
        assert math.isfinite(metrics[name]), (name, metrics[name])
    assert 0.0 <= metrics["test/miou_1box"] <= 1.0
    assert not any(k.startswith("val/") for k in metrics)


def test_cli_test_with_ckpt_path_and_predict(synthetic_sa1b, tmp_path, monkeypatch):
    """The command of the issue: ``litesam test --config R.yaml --ckpt_path X --data.test_shards DIR``; then
    ``litesam predict`` on the same recipe runs SegEvery over the shards (no crash, nothing written)."""
    monkeypatch.chdir(REPO)
    torch.manual_seed(0)
    module = LiteSAMModule(model_kwargs={"img_size": S}, val_top_n=100)
    tars = sorted(str(p) for p in synthetic_sa1b.glob("*.tar"))
    trainer = _trainer(tmp_path, limit_test_batches=1)
    trainer.test(module, datamodule=_dm(test_shards=tars[0]), verbose=False)
    ckpt = tmp_path / "x.ckpt"
    trainer.save_checkpoint(ckpt)
    # a checkpoint of `litesam fit` names its module class (LightningCLI's hyper-parameter "_class_path")
    blob = torch.load(ckpt, map_location="cpu", weights_only=False)
    blob["hyper_parameters"]["_class_path"] = "litesam_pl.modules.LiteSAMModule"
    torch.save(blob, ckpt)
    common = [*_configs("recipes/smoke/litesam.yaml"), *LOCAL,
              "--trainer.default_root_dir", str(tmp_path / "cli"), "--trainer.enable_progress_bar", "false",
              "--trainer.callbacks", json.dumps([]),
              "--model.init_args.model_kwargs", json.dumps({"img_size": S}), "--model.init_args.init_from", "null",
              "--model.init_args.val_top_n", "100",
              "--data.img_size", str(S), "--data.batch_size", "2", "--data.num_workers", "0", "--data.max_masks", "2",
              "--data.val_shards", "null"]
    c = cli.run_lightning_cli(["test", *common, "--data.test_shards", tars[0], "--ckpt_path", str(ckpt)])
    metrics = c.trainer.callback_metrics
    for name in ("test/miou_1box", "test/miou_1point", "test/ar100", "test/map"):
        assert name in metrics and torch.isfinite(metrics[name]), name
    c = cli.run_lightning_cli(["predict", *common, "--data.predict_shards", tars[0], "--ckpt_path", str(ckpt),
                               "--trainer.limit_predict_batches", "1"])
    assert c.trainer.state.finished


def _check_predictions(preds, n_images: int) -> None:
    flat = [p for batch in preds for p in batch]
    assert len(flat) == n_images
    for p in flat:
        assert p["key"].startswith("sa_") and p["original_size"] == (192, 256)
        assert isinstance(p["records"], list)
        for r in p["records"]:
            assert list(r["segmentation"]["size"]) == [192, 256]
            assert r["area"] >= 0 and len(r["bbox"]) == 4 and math.isfinite(r["predicted_iou"])


def test_trainer_predict_returns_segevery_records(synthetic_sa1b, tmp_path, monkeypatch):
    import litesam_pl.modules.base as base

    tars = sorted(str(p) for p in synthetic_sa1b.glob("*.tar"))
    calls = []
    real = base.segment_everything

    def spy(model, images, **kw):
        calls.append({"n": len(images), "shape": images[0].shape, **kw})
        # the filters off so that random weights still give records to check
        return real(model, images, **{**kw, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "top_n": 16})

    monkeypatch.setattr(base, "segment_everything", spy)
    torch.manual_seed(0)
    joint = LiteSAMModule(model_kwargs={"img_size": S})
    preds = _trainer(tmp_path).predict(joint, datamodule=_dm(predict_shards=tars[0]))
    _check_predictions(preds, 4)
    assert any(p["records"] for batch in preds for p in batch)
    assert calls[0]["prompts"] == "autoppn" and calls[0]["prompt_type"] == joint.val_prompt_form
    assert calls[0]["output_mode"] == "coco_rle" and calls[0]["output_sizes"] == [(192, 256)] * 2
    assert calls[0]["shape"] == (48, 64, 3)  # the model input (longest side S), masks at the original size
    # the backbone stage (AutoPPN untrained): a point grid
    calls.clear()
    backbone = BackboneBoxModule(model_kwargs={"img_size": S})
    preds = _trainer(tmp_path, limit_predict_batches=1).predict(backbone, datamodule=_dm(val_shards=tars[0]))
    _check_predictions(preds, 2)
    assert calls and calls[0]["prompts"] == "grid"
