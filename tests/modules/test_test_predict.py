"""``litesam test`` and ``litesam predict`` (issue 13, point 7): the data module's test/predict loaders (test_shards,
predict_shards, their defaults) and the module's test metrics and SegEvery predictions, on tiny synthetic shards;
``litesam predict``'s files (``SegEveryWriter``: segment-everything's outputs, a new folder per run, no overwrite,
rank parts merged)."""
from __future__ import annotations

import json
import math

import lightning.pytorch as pl
import pytest
import torch

from litesam_pl import cli
from litesam_pl.data.datamodule import SA1BDataModule
from litesam_pl.modules import BackboneBoxModule, LiteSAMModule
from litesam_pl.modules.config import ModelSpec, ValidationConfig
from tests.helpers import LOCAL, REPO, S, predict_args, recipe_configs

TEST_METRICS = ("test/miou_1box", "test/miou_1point", "test/ap_1box", "test/ap50_1box", "test/loss_mask_box", "test/loss_ppn",
                "test/ar100", "test/box_ar100", "test/point_precision",
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
    module = LiteSAMModule(model=ModelSpec(kwargs={"img_size": S}), validation=ValidationConfig(top_n=100))
    dm = _dm(val_shards=tars[1], test_shards=tars[0])
    out = _trainer(tmp_path).test(module, datamodule=dm)
    assert len(out) == 1
    metrics = out[0]
    for name in TEST_METRICS:
        assert name in metrics, name
        assert math.isfinite(metrics[name]), (name, metrics[name])
    assert 0.0 <= metrics["test/miou_1box"] <= 1.0
    assert not any(k.startswith("val/") for k in metrics)
    assert not [k for k in metrics if "1000" in k]  # validation.top_n 100: AR@100 only, never under a 1000 label


def test_cli_test_with_ckpt_path_and_predict(synthetic_sa1b, tmp_path, monkeypatch):
    """The command of the issue: ``litesam test --config R.yaml --ckpt_path X --data.test_shards DIR``; then
    ``litesam predict`` on the same recipe runs SegEvery over the shards (into ``--out``)."""
    monkeypatch.chdir(REPO)
    torch.manual_seed(0)
    module = LiteSAMModule(model=ModelSpec(kwargs={"img_size": S}), validation=ValidationConfig(top_n=100))
    tars = sorted(str(p) for p in synthetic_sa1b.glob("*.tar"))
    trainer = _trainer(tmp_path, limit_test_batches=1)
    trainer.test(module, datamodule=_dm(test_shards=tars[0]), verbose=False)
    ckpt = tmp_path / "x.ckpt"
    trainer.save_checkpoint(ckpt)
    # a checkpoint of `litesam fit` names its module class (LightningCLI's hyper-parameter "_class_path")
    blob = torch.load(ckpt, map_location="cpu", weights_only=False)
    blob["hyper_parameters"]["_class_path"] = "litesam_pl.modules.LiteSAMModule"
    torch.save(blob, ckpt)
    common = [*recipe_configs("recipes/smoke/litesam.yaml"), *LOCAL,
              "--trainer.default_root_dir", str(tmp_path / "cli"), "--trainer.enable_progress_bar", "false",
              "--trainer.callbacks", json.dumps([]),
              "--model.init_args.init_from", "null",
              "--model.init_args.validation.top_n", "100",
              "--data.img_size", str(S), "--data.batch_size", "2", "--data.num_workers", "0", "--data.max_masks", "2",
              "--data.val_shards", "null"]
    c = cli.run_lightning_cli(["test", *common, "--data.test_shards", tars[0], "--ckpt_path", str(ckpt)])
    metrics = c.trainer.callback_metrics
    for name in ("test/miou_1box", "test/miou_1point", "test/ar100", "test/ap_1box"):
        assert name in metrics and torch.isfinite(metrics[name]), name
    c = cli.run_lightning_cli(["predict", *common, "--data.predict_shards", tars[0], "--ckpt_path", str(ckpt),
                               "--trainer.limit_predict_batches", "1", "--out", str(tmp_path / "pred")])
    assert c.trainer.state.finished
    assert (tmp_path / "pred" / "results.json").is_file() and list((tmp_path / "pred").glob("*_masks.json"))


def _check_predictions(preds, n_images: int) -> None:
    flat = [p for batch in preds for p in batch]
    assert len(flat) == n_images
    for p in flat:
        assert p["key"].startswith("sa_") and p["original_size"] == (192, 256)
        assert isinstance(p["records"], list)
        assert p["filters"]["kept"] == len(p["records"])  # segment_everything's stats: what the writer captions
        for r in p["records"]:
            assert list(r["segmentation"]["size"]) == [192, 256]
            assert r["area"] >= 0 and len(r["bbox"]) == 4 and math.isfinite(r["predicted_iou"])


def test_trainer_predict_returns_segevery_records(synthetic_sa1b, tmp_path, monkeypatch):
    import litesam_pl.modules.base as base

    tars = sorted(str(p) for p in synthetic_sa1b.glob("*.tar"))
    calls = []

    class Spy(base.SegEvery):
        def __init__(self, model, options=None, **kw):
            calls.append(dict(kw))
            # the filters off so that random weights still give records to check
            super().__init__(model, options, **{**kw, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
                                                "top_n": 16})

        def run(self, images, output_sizes=None, **kw):
            calls[-1].update(n=len(images), shape=images[0].shape, output_sizes=output_sizes)
            return super().run(images, output_sizes, **kw)

    monkeypatch.setattr(base, "SegEvery", Spy)
    torch.manual_seed(0)
    joint = LiteSAMModule(model=ModelSpec(kwargs={"img_size": S}))
    preds = _trainer(tmp_path).predict(joint, datamodule=_dm(predict_shards=tars[0]))
    _check_predictions(preds, 4)
    assert any(p["records"] for batch in preds for p in batch)
    assert calls[0]["prompts"] == "autoppn" and calls[0]["prompt_type"] == joint.val_prompt_form
    assert calls[0]["output_mode"] == "coco_rle" and calls[0]["output_sizes"] == [(192, 256)] * 2
    assert calls[0]["shape"] == (48, 64, 3)  # the model input (longest side S), masks at the original size
    # the backbone stage (AutoPPN untrained): a point grid
    calls.clear()
    backbone = BackboneBoxModule(model=ModelSpec(kwargs={"img_size": S}))
    preds = _trainer(tmp_path, limit_predict_batches=1).predict(backbone, datamodule=_dm(val_shards=tars[0]))
    _check_predictions(preds, 2)
    assert calls and calls[0]["prompts"] == "grid"


# --- litesam predict's files (SegEveryWriter) -------------------------------------------------------------------------
@pytest.fixture
def loose_filters(monkeypatch):
    """SegEvery with the filters off, so that the tiny model's masks survive (records to write and check)."""
    import litesam_pl.modules.base as base

    real = base.SegEvery
    monkeypatch.setattr(base, "SegEvery", lambda model, options=None, **kw: real(
        model, options, **{**kw, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "top_n": 8}))


def _fails(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("litesam predict: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_cli_predict_writes_segment_everything_outputs(synthetic_sa1b, predict_ckpt, loose_filters, tmp_path,
                                                       monkeypatch, capsys):
    """``litesam predict`` without --out: per image ``<key>_masks.json`` (SA-1B layout, masks at the original size)
    and ``<key>_overlay.png``, ``results.json`` / ``images.json`` over the shard's keys (loadable by pycocotools), a
    summary line; the next run goes to ``predict2`` (``--overlays false``: no PNGs, the same masks JSON); an existing
    output folder or file is refused in one line."""
    from PIL import Image

    from litesam_pl.inference.postprocess import decode_rle

    monkeypatch.chdir(tmp_path)
    tar = sorted(str(p) for p in synthetic_sa1b.glob("*.tar"))[0]
    keys = _keys(_dm(predict_shards=tar).predict_dataloader())
    args = predict_args(tar, predict_ckpt, tmp_path / "root")
    cli.main(args)
    out = tmp_path / "runs" / "predict" / "predict"
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    images = json.loads((out / "images.json").read_text())
    assert f"results saved to {out.relative_to(tmp_path)} (4 images, {len(results)} masks)" in printed
    assert [im["key"] for im in images["images"]] == keys and len(keys) == 4
    ids = {im["key"]: im["id"] for im in images["images"]}
    assert all(ids[k] == int(k.split("_")[-1]) for k in keys)  # SA-1B keys sa_<n>: image_id n
    assert results and {r["image_id"] for r in results} <= set(ids.values())
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["results.json", "images.json"] + [f"{k}_{kind}" for k in keys for kind in ("masks.json", "overlay.png")])
    n_masks = 0
    for k in keys:
        doc = json.loads((out / f"{k}_masks.json").read_text())
        assert doc["image"] == {"image_id": ids[k], "width": 256, "height": 192, "file_name": k}
        for i, ann in enumerate(doc["annotations"]):
            assert ann["id"] == i and decode_rle(ann["segmentation"]).shape == (192, 256)
            assert {"bbox", "area", "predicted_iou", "stability_score", "point_coords"} <= set(ann)
        n_masks += len(doc["annotations"])
        assert Image.open(out / f"{k}_overlay.png").size == (256, 192)
    assert n_masks == len(results) and all(r["category_id"] == 1 and 0 <= r["score"] for r in results)
    coco = pytest.importorskip("pycocotools.coco")
    gt = coco.COCO(str(out / "images.json"))
    assert len(gt.loadRes(str(out / "results.json")).anns) == len(results)

    cli.main([*args, "--overlays", "false"])  # a second run: a new folder
    out2 = tmp_path / "runs" / "predict" / "predict2"
    assert "results saved to" in capsys.readouterr().out
    assert not list(out2.glob("*.png")) and (out2 / "results.json").is_file()
    for k in keys:  # the masks JSON without an overlay is the one written with it
        assert (out2 / f"{k}_masks.json").read_text() == (out / f"{k}_masks.json").read_text()

    before = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    line = _fails([*args, "--out", str(out)], capsys)  # a folder holding a run's results: refused at setup
    assert "results.json already exists" in line and "--out" in line
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == before
    line = _fails([*args, "--out", str(out / "results.json")], capsys)  # a file as --out
    assert "is an existing file" in line
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / f"{keys[0]}_masks.json").write_text("keep me")  # a per-image file: refused, kept
    line = _fails([*args, "--out", str(tmp_path / "mine"), "--overlays", "false"], capsys)
    assert f"{keys[0]}_masks.json already exists" in line
    assert (tmp_path / "mine" / f"{keys[0]}_masks.json").read_text() == "keep me"


def test_writer_merges_rank_parts(synthetic_sa1b, tmp_path, capsys):
    """DDP: each rank writes its own images and its ``results.rank<r>.jsonl`` part; rank 0 merges the parts in rank
    order into ``results.json`` / ``images.json`` and deletes them; a rank whose part is missing is named."""
    from types import SimpleNamespace

    from litesam_pl.modules import SegEveryWriter
    from litesam_pl.modules.prediction_writer import key_image_id

    rle = {"size": [4, 6], "counts": "0c00"}
    record = {"segmentation": rle, "area": 0, "bbox": [0, 0, 0, 0], "predicted_iou": 0.9, "stability_score": 0.9,
              "point_coords": [[0, 0]], "crop_box": [0, 0, 6, 4]}

    def rank(r: int, keys) -> SegEveryWriter:
        w = SegEveryWriter(output_dir=str(tmp_path), overlays=False)
        trainer = SimpleNamespace(global_rank=r, is_global_zero=r == 0)
        w.out_dir = tmp_path
        w.on_predict_start(trainer, None)
        preds = [{"key": k, "original_size": (4, 6), "records": [record] * (i + 1), "filters": None}
                 for i, k in enumerate(keys)]
        w.write_on_batch_end(trainer, None, preds, None, {}, 0, 0)
        w._close_parts()
        return w

    w0 = rank(0, ["sa_10", "sa_11"])
    rank(1, ["img/a b"])  # no number: a hash id; a key with a slash and a space: a safe stem
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == ["images.rank0.jsonl", "images.rank1.jsonl",
                                                               "results.rank0.jsonl", "results.rank1.jsonl"]
    assert w0.merge(world_size=3) == {"images": 3, "masks": 4}
    io = capsys.readouterr()
    assert f"results saved to {tmp_path} (3 images, 4 masks)" in io.out
    assert "rank(s) 2" in io.err  # world size 3: rank 2 wrote no part
    assert not list(tmp_path.glob("*.jsonl"))
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["image_id"] for r in results] == [10, 11, 11, key_image_id("img/a b")]
    images = json.loads((tmp_path / "images.json").read_text())["images"]
    assert [(im["key"], im["file_name"]) for im in images] == [("sa_10", "sa_10"), ("sa_11", "sa_11"),
                                                               ("img/a b", "img_a_b")]
    assert (tmp_path / "img_a_b_masks.json").is_file() and key_image_id("img/a b") > 2 ** 32
