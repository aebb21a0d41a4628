"""The three LightningModules: losses, freezing, checkpoints (contract), init_from, NaN guard, metrics.json."""
from __future__ import annotations

import json
import math
from functools import partial

import lightning.pytorch as pl
import pytest
import torch

from litesam_pl.models import model_config
from litesam_pl.modules import AutoPPNModule, BackboneBoxModule, LiteSAMModule, load_init_weights
from litesam_pl.modules.config import MaskLossConfig, ModelSpec, ValidationConfig
from litesam_pl.modules.optim import WARMUP_COSINE
from litesam_pl.modules.callbacks import CPUThreads, ImageLogger, MetricsJSON, NaNGuard, NonFiniteLossError, Throughput
from tests.helpers import REPO, TINY, S, batch_loader, cpu_trainer, fake_batch


def test_joint_losses_and_gradients():
    m = LiteSAMModule(model=ModelSpec(kwargs=TINY), optimizer=partial(torch.optim.Adam, lr=1e-3))
    terms = m.compute_losses(fake_batch())
    for k in ("loss", "ppn", "ppn_point", "ppn_box", "mask_box", "mask_point", "focal_box", "dice_point", "iou_box"):
        assert torch.isfinite(terms[k]), k
    assert terms["loss"].item() == pytest.approx(terms["ppn"].item() + terms["mask"].item(), rel=1e-5)
    terms["loss"].backward()
    for part in ("image_encoder", "autoppn", "mask_decoder"):
        grads = [p.grad for p in getattr(m.model, part).parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), part


def test_frozen_encoder_embedding_cache():
    torch.manual_seed(0)
    ppn = AutoPPNModule(model=ModelSpec(kwargs=TINY), freeze_encoder=True, embedding_cache_mb=1)
    ppn.log = lambda *a, **k: None
    calls = []
    ppn.model.image_encoder.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    ppn.train()
    ppn.on_train_epoch_start()
    images = torch.randn(3, 3, S, S)
    first = ppn.encode(images)
    again = ppn.encode(images[[2, 0]])  # all cached: no encoder call
    mixed = ppn.encode(torch.cat([images[:1], images[1:2].flip(-1)]))  # a flipped view is a new entry
    assert calls == [3, 1]
    torch.testing.assert_close(again, first[[2, 0]])
    torch.testing.assert_close(mixed[0], first[0])
    with torch.no_grad():
        torch.testing.assert_close(first, ppn.model.image_encoder(images), atol=1e-5, rtol=1e-5)
    ppn.eval()
    ppn.encode(images)  # validation never reads or fills the cache
    assert calls[-1] == 3 and len(ppn._cache) == 4
    # too small: computes, stores nothing
    tiny = AutoPPNModule(model=ModelSpec(kwargs=TINY), freeze_encoder=True, embedding_cache_mb=1e-6)
    tiny.log = lambda *a, **k: None
    tiny.train()
    tiny.encode(images)
    assert tiny._cache == {}
    with pytest.raises(ValueError, match="freeze_encoder"):
        AutoPPNModule(model=ModelSpec(kwargs=TINY), embedding_cache_mb=10)


def test_stage_freezing_and_prompt_kinds():
    bb = BackboneBoxModule(model=ModelSpec(kwargs=TINY))
    assert not any(p.requires_grad for p in bb.model.autoppn.parameters())
    terms = bb.compute_losses(fake_batch())
    assert "mask_box" in terms and "mask_point" not in terms and "ppn" not in terms
    bb_pts = BackboneBoxModule(model=ModelSpec(kwargs=TINY), train_point_prompts=True)
    assert "mask_point" in bb_pts.compute_losses(fake_batch())
    ppn = AutoPPNModule(model=ModelSpec(kwargs=TINY), freeze_encoder=True)
    trainable = {n.split(".")[1] for n, p in ppn.named_parameters() if p.requires_grad}
    assert trainable == {"autoppn"}
    terms = ppn.compute_losses(fake_batch())
    assert "ppn" in terms and "mask" not in terms
    assert not terms["loss"].grad_fn is None
    with pytest.raises(ValueError, match="AutoPPN"):
        AutoPPNModule(model=ModelSpec(kwargs={**TINY, "autoppn": False}))
    with pytest.raises(ValueError, match="img_size"):
        LiteSAMModule(model=ModelSpec(kwargs=TINY)).compute_losses(fake_batch(S=128))


def test_fit_validate_checkpoint_contract_and_init_from(tmp_path):
    m = LiteSAMModule(model=ModelSpec(kwargs=TINY), optimizer=partial(torch.optim.Adam, lr=1e-3),
                      validation=ValidationConfig(compute_map=True))
    cbs = [MetricsJSON(), NaNGuard(), Throughput(window=1), ImageLogger(every_n_steps=2), CPUThreads(0)]
    trainer = cpu_trainer(tmp_path, callbacks=cbs, limit_val_batches=2)
    trainer.fit(m, train_dataloaders=batch_loader(), val_dataloaders=batch_loader())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for k in ("val/miou_1box", "val/miou_1point", "val/ap_1box", "val/ap50_1box", "val/ar100", "val/ar_top1000",
              "val/point_hit_rate", "val/point_precision", "val/box_ar100", "val/box_ar_top1000"):
        assert k in metrics and math.isfinite(metrics[k]) and 0.0 <= metrics[k] <= 1.0, k
    assert metrics["global_step"] == 2
    assert list((tmp_path / "images").glob("step_*.png"))
    assert "train/samples_per_sec" in trainer.logged_metrics or "train/samples_per_sec" in trainer.callback_metrics
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    blob = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert blob["hyper_parameters"]["model"]["name"] == "litesam"
    assert blob["hyper_parameters"]["model"]["kwargs"] == TINY
    assert all(k.startswith("model.") for k in blob["state_dict"])
    assert blob["litesam_model"] == model_config(m.model)  # what load_model reads
    # init_from: a fresh module starts from those weights
    m2 = AutoPPNModule(model=ModelSpec(kwargs=TINY), init_from=str(ckpt))
    m2.apply_init_from()
    for k, v in m.model.state_dict().items():
        torch.testing.assert_close(m2.model.state_dict()[k], v, msg=k)
    assert not m2.init_report["skipped"]
    with pytest.raises(FileNotFoundError):
        AutoPPNModule(model=ModelSpec(kwargs=TINY), init_from=str(tmp_path / "nope.ckpt")).apply_init_from()
    # and through fit: the warm start happens in setup("fit")
    m3 = LiteSAMModule(model=ModelSpec(kwargs=TINY), optimizer=partial(torch.optim.Adam, lr=0.0),
                       init_from=str(ckpt))
    cpu_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(m3, train_dataloaders=batch_loader(1))
    assert m3.init_report is not None and not m3.init_report["skipped"]
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="cannot read"):
        load_init_weights(m2.model, str(bad))


def test_metrics_json_is_strict_json(tmp_path):
    """``metrics.json`` goes through ``litesam_pl.files.write_json``: a NaN metric is ``null``; indent 2, keys sorted,
    no final newline, as always."""
    from types import SimpleNamespace

    from lightning.pytorch.trainer.states import TrainerFn

    metrics = {"val/b": torch.tensor(float("nan")), "val/a": torch.tensor(0.5), "train/loss": torch.tensor(1.0)}
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, global_step=3, current_epoch=0,
                              callback_metrics=metrics, state=SimpleNamespace(fn=TrainerFn.FITTING),
                              default_root_dir=str(tmp_path))
    MetricsJSON().on_validation_end(trainer, None)
    assert (tmp_path / "metrics.json").read_text() == \
        '{\n  "epoch": 0,\n  "global_step": 3,\n  "val/a": 0.5,\n  "val/b": null\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_backbone_and_autoppn_validation_keys(tmp_path):
    bb = BackboneBoxModule(model=ModelSpec(kwargs={**TINY, "autoppn": False}),
                           validation=ValidationConfig(compute_map=False))
    trainer = cpu_trainer(tmp_path, callbacks=[MetricsJSON()])
    trainer.validate(bb, dataloaders=batch_loader(1), verbose=False)
    # validation without a checkpoint scores random weights: its own file, never the training run's metrics.json
    assert not (tmp_path / "metrics.json").exists()
    got = json.loads((tmp_path / "validate_random_weights.json").read_text())
    assert {"val/miou_1box", "val/miou_1point"} <= set(got) and "val/ar100" not in got and "val/ap_1box" not in got
    ppn = AutoPPNModule(model=ModelSpec(kwargs=TINY))
    trainer = cpu_trainer(tmp_path, callbacks=[MetricsJSON()])
    trainer.validate(ppn, dataloaders=batch_loader(1), verbose=False)
    got = json.loads((tmp_path / "validate_random_weights.json").read_text())
    assert {"val/ar100", "val/ar_top1000", "val/point_hit_rate"} <= set(got) and "val/miou_1box" not in got
    # the AR names say what they count (issue 14): validation.top_n 200 logs ar_top200 (every proposal of AutoPPN's
    # top 200 prompts), never a 1000 label; no name of the benchmarks' official protocols (map, ar1000)
    ppn = AutoPPNModule(model=ModelSpec(kwargs=TINY), validation=ValidationConfig(top_n=200))
    trainer = cpu_trainer(tmp_path, callbacks=[MetricsJSON()])
    trainer.validate(ppn, dataloaders=batch_loader(1), verbose=False)
    got = json.loads((tmp_path / "validate_random_weights.json").read_text())
    assert {"val/ar100", "val/ar_top200", "val/box_ar_top200"} <= set(got)
    assert not [k for k in got if "1000" in k or k in ("val/map", "val/map_50")], sorted(got)


def test_perfect_predictions_score_one():
    """The metric plumbing: GT boxes as proposals give AR 1, masks that equal the GT give mIoU 1."""
    m = LiteSAMModule(model=ModelSpec(kwargs=TINY))
    batch = fake_batch()
    valid = batch["valid"]

    def predict(emb, boxes=None, points=None, multimask_output=False):
        M = 3 if multimask_output else 1
        logits = torch.where(batch["masks"], 10.0, -10.0)[:, :, None].expand(-1, -1, M, -1, -1)
        return logits, torch.ones(*logits.shape[:3])

    m.predict = predict
    m.eval_masks(torch.zeros(1), batch)
    assert float(m.val_miou_1box.compute()["miou"]) == pytest.approx(1.0)
    assert float(m.val_miou_1point.compute()["miou"]) == pytest.approx(1.0)
    assert float(m.val_map.compute()["ap"]) == pytest.approx(1.0)
    assert int(valid.sum()) == 5
    # AutoPPN decode returning exactly the GT boxes -> box AR 1, every point inside a mask -> hit rate and
    # point precision 1
    batch["valid"][:] = True
    B = batch["image"].shape[0]
    dec = {"boxes": batch["gt_boxes"], "scores": torch.ones(B, 3), "valid": torch.ones(B, 3, dtype=torch.bool),
           "points": batch["points"][:, :, 0], "groups": torch.zeros(B, 3, dtype=torch.long)}
    m.model.autoppn.decode = lambda *a, **k: dec
    m.eval_ppn({"heatmap_logits": torch.zeros(B, 3, 8, 8), "boxes": torch.zeros(B, 3, 4, 8, 8)}, batch)
    assert float(m.val_box_recall.compute()["ar@100"]) == pytest.approx(1.0)
    assert m.val_point_hit.compute().item() == pytest.approx(1.0)
    assert m.val_point_precision.compute().item() == pytest.approx(1.0)
    # points outside every mask (the image corner, background here) count as misses
    m.val_point_precision.reset()
    dec["points"] = torch.zeros_like(dec["points"]) + torch.tensor([63.0, 63.0])
    m.eval_ppn({"heatmap_logits": torch.zeros(B, 3, 8, 8), "boxes": torch.zeros(B, 3, 4, 8, 8)}, batch)
    assert m.val_point_precision.compute().item() == pytest.approx(0.0)


def test_nan_guard_names_loss_and_step(tmp_path):
    class Broken(LiteSAMModule):
        def compute_losses(self, batch):
            terms = super().compute_losses(batch)
            if self.global_step == 1:
                terms["ppn_box"] = terms["ppn_box"] * float("nan")
                terms["loss"] = terms["loss"] + terms["ppn_box"]
            return terms

    m = Broken(model=ModelSpec(kwargs=TINY))
    trainer = cpu_trainer(tmp_path, callbacks=[NaNGuard()], max_steps=3, limit_val_batches=0)
    with pytest.raises(NonFiniteLossError, match=r"loss 'ppn_box' is nan at global step 1"):
        trainer.fit(m, train_dataloaders=batch_loader(3))


def test_check_finite_one_test_for_all_terms_names_every_bad_one():
    from litesam_pl.modules.callbacks import check_finite, nonfinite_codes

    terms = {"loss": torch.tensor(float("nan")), "a": torch.tensor(1.0), "b": torch.tensor(float("-inf")),
             "c": torch.tensor([1.0, float("inf")]), "d": torch.tensor(float("nan"), dtype=torch.bfloat16)}
    assert nonfinite_codes(terms).tolist() == [0, 3, 2, 1, 1]  # a, b, c, d, then the total loss last
    with pytest.raises(NonFiniteLossError, match=r"^loss 'b' is -inf at global step 7 \(also non-finite: 'c' is inf, "
                                                 r"'d' is nan, 'loss' is nan\)"):
        check_finite(terms, 7)
    check_finite({"loss": torch.tensor(2.0), "a": torch.tensor([0.0, 1.0])}, 7)  # finite: no error


def test_only_the_backbone_stage_leaves_parameters_unused():
    """Finding 11 of issue 16: plain DDP (``strategy: ddp``) needs a gradient for every trainable parameter in every
    step, else it fails at the next step ("Expected to have finished reduction ..."). The AutoPPN and joint stages
    give one to all of them (the joint stage in every rotation of its prompt forms, with fewer masks than forms
    too), and the box-only backbone stage freezes SAM's 3 point-label embeddings (they would get no gradient), so
    every recipe uses plain DDP. With point prompts on, the backbone stage trains them too."""
    import yaml
    from unittest import mock

    point_embeddings = {f"model.prompt_encoder.{n}.weight"
                        for n in ("point_embeddings.0", "point_embeddings.1", "not_a_point_embed")}
    cases = [(BackboneBoxModule, {}, set(), "backbone_1box", [(3, 0)]),
             (BackboneBoxModule, {"train_point_prompts": True}, set(), "backbone_1box", [(3, 0)]),
             (AutoPPNModule, {"freeze_encoder": True}, set(), "autoppn", [(3, 0)]),
             (AutoPPNModule, {}, set(), "autoppn", [(3, 0)]),
             (LiteSAMModule, {}, set(), "litesam", [(1, 0), (2, 0), (2, 1), (2, 2), (3, 0)])]
    for cls, kw, unused_expected, recipe, runs in cases:
        torch.manual_seed(0)
        m = cls(model=ModelSpec(kwargs=TINY), **kw)
        for K, step in runs:
            m.zero_grad(set_to_none=True)
            with mock.patch.object(cls, "global_step", property(lambda self, s=step: s)):
                m.compute_losses(fake_batch(K=K))["loss"].backward()
            unused = {n for n, p in m.named_parameters() if p.requires_grad and p.grad is None}
            assert unused == unused_expected, (cls.__name__, kw, K, step, unused)
        recipe_file = REPO / "recipes" / f"{recipe}.yaml"
        strategy = yaml.safe_load(recipe_file.read_text())["trainer"]["strategy"]
        assert strategy == ("ddp_find_unused_parameters_true" if unused_expected else "ddp"), (recipe, strategy)
        frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
        if cls is not AutoPPNModule:  # (the AutoPPN stage freezes the whole prompt encoder)
            assert (point_embeddings <= frozen) == (cls is BackboneBoxModule and not kw.get("train_point_prompts"))


class _StepLR(pl.Callback):
    """The optimizer's learning rate at the start of every training step."""

    def __init__(self):
        self.lrs = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_cosine_schedule_and_bad_args(tmp_path):
    """WarmupCosine through a fit: warm-up, then the cosine to 1% of the lr at the trainer's last step (its
    ``estimated_stepping_batches``), each step's lr the optimizer part's old schedule."""
    m = BackboneBoxModule(model=ModelSpec(kwargs={**TINY, "autoppn": False}),
                          optimizer=partial(torch.optim.Adam, lr=1e-2),
                          lr_scheduler={"class_path": WARMUP_COSINE, "init_args": {"warmup_steps": 2}})
    lrs = _StepLR()
    trainer = cpu_trainer(tmp_path, max_steps=6, limit_val_batches=0, callbacks=[lrs])
    trainer.fit(m, train_dataloaders=batch_loader(6))
    assert trainer.estimated_stepping_batches == 6
    cosine = [0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)]
    assert lrs.lrs == pytest.approx([1e-2 * f for f in (0.5, 1.0, *cosine[:4])], rel=1e-12)
    with pytest.raises(ValueError, match="lr_scheduler.init_args.schedule"):
        BackboneBoxModule(model=ModelSpec(kwargs=TINY),
                          lr_scheduler={"class_path": WARMUP_COSINE, "init_args": {"schedule": "step"}})
    with pytest.raises(ValueError, match="prompt_forms"):
        LiteSAMModule(model=ModelSpec(kwargs=TINY), prompt_forms=[])
    with pytest.raises(ValueError, match="prompt_forms"):
        LiteSAMModule(model=ModelSpec(kwargs=TINY), prompt_forms=["box", "mask"])


def test_cpu_threads_auto(monkeypatch):
    monkeypatch.setattr(CPUThreads, "_busy_cores", staticmethod(lambda window=0.5: 0.0))
    cores = CPUThreads.idle_cores()
    assert cores >= 1
    monkeypatch.setattr(CPUThreads, "_busy_cores", staticmethod(lambda window=0.5: float(cores)))
    assert CPUThreads.idle_cores() == 1  # a busy machine: one thread
    with pytest.raises(ValueError, match="num_threads"):
        CPUThreads("many")


def test_joint_prompt_split_gives_each_mask_one_prompt_form():
    torch.manual_seed(0)
    batch = fake_batch(K=6)
    every = LiteSAMModule(model=ModelSpec(kwargs={"img_size": S}), prompt_split=False)
    split = LiteSAMModule(model=ModelSpec(kwargs={"img_size": S}), prompt_split=True)
    split.load_state_dict(every.state_dict())
    seen = []
    real = split.model.predict_masks

    def spy(emb, points=None, boxes=None, multimask_output=False):
        form = "+".join(n for n, x in (("point", points), ("box", boxes)) if x is not None)
        k = (boxes if boxes is not None else points[0]).shape[1]
        seen.append((form, k, multimask_output))
        return real(emb, points=points, boxes=boxes, multimask_output=multimask_output)

    split.model.predict_masks = spy
    terms = split.compute_losses(batch)
    # slot j gets form j % 3: 2 boxes + 2 points + 2 point+box instead of 6 of each; the output each form reads
    assert seen == [("box", 2, False), ("point", 2, True), ("point+box", 2, False)]  # global step 0
    assert {"mask_box", "mask_point", "mask_pointbox", "ppn"} <= set(terms)
    parts = terms["mask_box"] + terms["mask_point"] + terms["mask_pointbox"]
    assert terms["mask"].item() == pytest.approx(parts.item(), rel=1e-6)
    # the box third alone equals the unsplit module's box loss on slots 0 and 3
    sub = {**batch, **{k: batch[k][:, 0::3] for k in ("masks", "boxes", "gt_boxes", "points", "point_labels", "valid")}}
    ref = every.mask_losses(every.encode(batch["image"]), sub, ("box",))
    assert terms["mask_box"].item() == pytest.approx(ref["mask_box"].item(), rel=1e-5)


def test_segevery_prompt_form_is_one_the_joint_stage_trains():
    """SegEvery's default prompt form and the benchmarks' box output are forms/outputs the training supervises."""
    import inspect

    from litesam_pl.inference.segevery import segment_everything
    from litesam_pl.models.prompt_forms import SEGEVERY_PROMPT_FORM, multimask_output_for

    default = inspect.signature(segment_everything).parameters["prompt_type"].default
    assert default == SEGEVERY_PROMPT_FORM
    joint = LiteSAMModule(model=ModelSpec(kwargs=TINY))
    assert SEGEVERY_PROMPT_FORM in joint.train_prompt_forms()
    assert joint.val_prompt_form == SEGEVERY_PROMPT_FORM  # val/ar100 of the joint stage: SegEvery's default
    assert AutoPPNModule.val_prompt_form in BackboneBoxModule(model=ModelSpec(kwargs=TINY)).train_prompt_forms()
    assert "box" in BackboneBoxModule(model=ModelSpec(kwargs=TINY)).train_prompt_forms()
    # the training decoder call of each form reads the output the inference side reads for it
    seen = []
    real = joint.model.predict_masks

    def spy(emb, points=None, boxes=None, multimask_output=False):
        form = "+".join(n for n, x in (("point", points), ("box", boxes)) if x is not None)
        seen.append((form, multimask_output))
        return real(emb, points=points, boxes=boxes, multimask_output=multimask_output)

    joint.model.predict_masks = spy
    joint.compute_losses(fake_batch(K=6))
    assert {f: mm for f, mm in seen} == {f: multimask_output_for(f) for f in joint.train_prompt_forms()}


def test_joint_prompt_split_rotates_forms_so_every_form_trains(monkeypatch):
    """With fewer prompts per image than forms, the global step rotates which forms the slots get."""
    m = LiteSAMModule(model=ModelSpec(kwargs=TINY))
    seen = []
    real = m.model.predict_masks

    def spy(emb, points=None, boxes=None, multimask_output=False):
        seen.append("+".join(n for n, x in (("point", points), ("box", boxes)) if x is not None))
        return real(emb, points=points, boxes=boxes, multimask_output=multimask_output)

    m.model.predict_masks = spy
    batch = fake_batch(K=2)
    for step in range(3):
        monkeypatch.setattr(LiteSAMModule, "global_step", property(lambda self, s=step: s))
        m.compute_losses(batch)
    assert seen == ["box", "point", "point", "point+box", "point+box", "box"]


def test_eval_segevery_scores_segment_everything_on_the_raw_image():
    """val/ar100 is SegEvery run on the un-normalised, un-padded image, scored against the valid GT masks."""
    from litesam_pl.inference.segevery import segment_everything
    from litesam_pl.metrics.recall import MaskRecall, pred_gt_iou_matrix

    torch.manual_seed(0)
    m = LiteSAMModule(model=ModelSpec(kwargs=TINY))
    m.eval()
    batch = fake_batch(B=1, K=3)
    h, w = 48, 64
    batch["input_size"] = torch.tensor([[h, w]])
    raw = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8)
    norm = (raw.permute(2, 0, 1).float() - m.model.pixel_mean.view(3, 1, 1)) / m.model.pixel_std.view(3, 1, 1)
    batch["image"] = torch.zeros(1, 3, S, S)
    batch["image"][0, :, :h, :w] = norm
    batch["masks"][:, :, h:] = False
    m.eval_segevery(batch)
    ref = segment_everything(m.model, raw.numpy(), prompts="autoppn", prompt_type=m.val_prompt_form,
                             top_n=m.cfg.validation.top_n, score_threshold=m.cfg.validation.ppn_score_threshold,
                             pred_iou_thresh=0.0, stability_score_thresh=0.0, output_mode="tensors")
    want = MaskRecall(max_dets=(100, 1000))
    want.update(pred_gt_iou_matrix(ref["masks"], batch["masks"][0, batch["valid"][0], :h, :w]))
    assert ref["masks"].shape[-2:] == (h, w)
    assert m.val_mask_recall.num_gt.item() == int(batch["valid"][0].sum())
    assert m.val_mask_recall.matched.tolist() == want.matched.tolist()


def test_point_sampled_mask_loss_trains_every_stage_and_learns():
    """``mask_loss.resolution: points`` (issue 17): finite terms and gradients in the joint stage, and a few
    steps on one batch lower the box-prompt focal + dice as the full-resolution loss does."""
    torch.manual_seed(0)
    m = LiteSAMModule(model=ModelSpec(kwargs=TINY), mask_loss=MaskLossConfig(resolution="points", points=256),
                      optimizer=partial(torch.optim.Adam, lr=1e-3))
    terms = m.compute_losses(fake_batch())
    for k in ("loss", "mask_box", "mask_point", "focal_box", "dice_point", "iou_box", "iou_point"):
        assert torch.isfinite(terms[k]), k
    terms["loss"].backward()
    grads = [p.grad for p in m.model.mask_decoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    with pytest.raises(ValueError, match="mask_loss.resolution"):
        BackboneBoxModule(model=ModelSpec(kwargs=TINY), mask_loss=MaskLossConfig(resolution="pointz"))

    batch = fake_batch(seed=3)
    torch.manual_seed(0)
    bb = BackboneBoxModule(model=ModelSpec(kwargs=TINY),
                           mask_loss=MaskLossConfig(focal_alpha=-1, resolution="points", points=512))
    opt = torch.optim.Adam([p for p in bb.parameters() if p.requires_grad], lr=2e-3)
    # the same loss read at every pixel, as a yardstick
    full = BackboneBoxModule(model=ModelSpec(kwargs=TINY), mask_loss=MaskLossConfig(focal_alpha=-1))

    def full_loss() -> float:
        full.load_state_dict(bb.state_dict())
        with torch.no_grad():
            t = full.compute_losses(batch)
        return float(10 * t["focal_box"] + t["dice_box"])

    before = full_loss()
    for _ in range(40):
        opt.zero_grad()
        bb.compute_losses(batch)["loss"].backward()
        opt.step()
    assert full_loss() < 0.7 * before
