"""The batched training decoder (litesam_pl.models.batched_decode): all B x K prompts in one call give SAM's
per-image ``MaskDecoder`` results (values and gradients), and a training step's operations grow far less than the
batch."""
from __future__ import annotations

from functools import partial

import pytest
import torch

import litesam_pl
from litesam_pl.models.batched_decode import decode_prompts, supports_batched_decode

S = 64


def _model():
    torch.manual_seed(0)
    return litesam_pl.create_model("litesam", img_size=S).eval()


def _prompts(B: int, K: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(B, K, 2, generator=g) * (S - 16)
    wh = 4 + torch.rand(B, K, 2, generator=g) * 12
    boxes = torch.cat([xy, xy + wh], -1)
    coords = torch.rand(B, K, 2, 2, generator=g) * S
    labels = torch.tensor([1, 0]).expand(B, K, 2).clone()
    labels[:, ::2, 1] = -1  # every other prompt: one point and a padding point
    return boxes, (coords, labels)


@pytest.mark.parametrize("form", ["box", "point", "point+box"])
@pytest.mark.parametrize("multimask", [False, True])
def test_batched_equals_per_image_values_and_gradients(form, multimask):
    model = _model()
    B, K = 3, 4
    boxes, points = _prompts(B, K)
    kw = {"boxes": boxes if "box" in form else None, "points": points if "point" in form else None,
          "multimask_output": multimask}
    emb = torch.randn(B, 256, S // 16, S // 16, requires_grad=True)
    pe = model.prompt_encoder.pe_layer((S // 16, S // 16)).unsqueeze(0)
    out = model.predict_masks(emb, **kw)
    ref = model._predict_masks_per_image(emb, pe, kw["points"], kw["boxes"], multimask)
    M = 3 if multimask else 1
    assert out[0].shape == ref[0].shape == (B, K, M, S // 4, S // 4) and out[1].shape == (B, K, M)
    torch.testing.assert_close(out[0], ref[0], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(out[1], ref[1], atol=2e-5, rtol=1e-4)
    w = torch.randn_like(out[0])
    params = [p for p in model.mask_decoder.parameters()] + [p for p in model.prompt_encoder.parameters()] + [emb]
    g_out = torch.autograd.grad((out[0] * w).sum() + out[1].sum(), params, allow_unused=True)
    g_ref = torch.autograd.grad((ref[0] * w).sum() + ref[1].sum(), params, allow_unused=True)
    for p, a, b in zip(params, g_out, g_ref):
        # SAM's encoder leaves embeddings of absent labels without a gradient (None), ours gives them zeros
        a = torch.zeros_like(p) if a is None else a
        b = torch.zeros_like(p) if b is None else b
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_decode_prompts_matches_sams_forward_for_one_image():
    model = _model()
    boxes, _ = _prompts(1, 5)
    emb = torch.randn(1, 256, S // 16, S // 16)
    pe = model.prompt_encoder.pe_layer((S // 16, S // 16)).unsqueeze(0)
    sparse, dense = model.prompt_encoder(points=None, boxes=boxes[0], masks=None)
    for mm in (False, True):
        got = decode_prompts(model.mask_decoder, emb.expand(5, -1, -1, -1), pe, sparse, dense, mm)
        want = model.mask_decoder(image_embeddings=emb, image_pe=pe, sparse_prompt_embeddings=sparse,
                                  dense_prompt_embeddings=dense, multimask_output=mm)
        torch.testing.assert_close(got[0], want[0], atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(got[1], want[1], atol=2e-5, rtol=1e-4)
    assert supports_batched_decode(model.mask_decoder) and not supports_batched_decode(torch.nn.Linear(2, 2))


def test_no_prompts_and_errors():
    model = _model()
    emb = torch.randn(2, 256, S // 16, S // 16)
    m, iou = model.predict_masks(emb, boxes=torch.zeros(2, 0, 4))
    assert m.shape[:3] == (2, 0, 1) and iou.shape[:2] == (2, 0)
    with pytest.raises(ValueError, match="needs points and/or boxes"):
        model.predict_masks(emb)


def test_joint_step_operations_grow_far_less_than_the_batch():
    """Issue 17: the joint stage's operations per step at batch 8 are at most 1.5x those at batch 2 (before the
    batched decoder: 3.25x on an H200, ~10,000 more ATen ops per image)."""
    from benchmarks.train_step import count_ops
    from litesam_pl.modules import LiteSAMModule
    from litesam_pl.modules.config import ModelSpec, PromptConfig
    from tests.helpers import fake_batch

    counts = {}
    for B in (2, 8):
        torch.manual_seed(0)
        m = LiteSAMModule(model=ModelSpec(kwargs={"img_size": S}), prompts=PromptConfig(max_per_image=4))
        counts[B] = count_ops(m, fake_batch(B=B, K=4, S=S), torch.device("cpu"), None)["aten_ops"]
    assert counts[8] <= 1.5 * counts[2], counts


@pytest.mark.slow
def test_compute_losses_traces_without_graph_breaks():
    """Issue 17: the training losses of the backbone and joint stages trace into one graph (``torch.compile``
    needs no fallback to Python; before, SAM's boolean indexing in the prompt encoder broke it 11 times)."""
    import torch._dynamo as dynamo

    from litesam_pl.modules import BackboneBoxModule, LiteSAMModule
    from litesam_pl.modules.config import ModelSpec, PromptConfig
    from tests.helpers import fake_batch

    for cls in (BackboneBoxModule, LiteSAMModule):
        torch.manual_seed(0)
        m = cls(model=ModelSpec(kwargs={"img_size": S}), prompts=PromptConfig(max_per_image=4))
        dynamo.reset()
        ex = dynamo.explain(m.compute_losses)(fake_batch(B=2, K=4, S=S))
        assert (ex.graph_count, ex.graph_break_count) == (1, 0), (cls.__name__, [str(r.reason) for r in ex.break_reasons])


@pytest.mark.slow
def test_torch_compile_callback_trains_the_same_losses(tmp_path):
    """The opt-in ``TorchCompile`` callback replaces ``compute_losses`` with its compiled form for fitting; the
    first step's losses equal the eager ones (``aot_eager``: dynamo + AOT autograd without generated kernels)."""
    from litesam_pl.modules import LiteSAMModule
    from litesam_pl.modules.callbacks import TorchCompile
    from litesam_pl.modules.config import ModelSpec
    from tests.helpers import batch_loader, cpu_trainer, fake_batch

    torch.manual_seed(0)
    m = LiteSAMModule(model=ModelSpec(kwargs={"img_size": S}), optimizer=partial(torch.optim.Adam, lr=1e-3))
    cb = TorchCompile(backend="aot_eager")
    trainer = cpu_trainer(tmp_path, max_steps=2, limit_val_batches=0, callbacks=[cb])
    trainer.fit(m, train_dataloaders=batch_loader(2))
    assert m.losses_compiled and trainer.global_step == 2
    eager = m.compute_losses._torchdynamo_orig_callable(fake_batch())  # same weights, same step (prompt rotation)
    compiled = m.compute_losses(fake_batch())
    for k in ("loss", "ppn", "mask"):
        assert compiled[k].item() == pytest.approx(eager[k].item(), rel=1e-4), k
