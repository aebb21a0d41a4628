"""Numerics the GPU path depends on, checked on the CPU (issue 16, findings 12 and 13):

- under bf16 autocast, AutoPPN's two heads and SAM's prompt positional encodings still compute in fp32;
- MSPM's pooling on the CPU (prefix-sum ``box_mean``) and on GPUs (``F.avg_pool2d``) give the same encoder."""
from __future__ import annotations

from unittest import mock

import torch

import litesam_pl
from litesam_pl.models import mixers
from litesam_pl.models.batched_decode import dense_pe, embed_prompts, prompt_layout

S = 64


def test_autoppn_heads_run_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    model = litesam_pl.create_model("litesam", img_size=S).eval()
    emb = torch.randn(2, 256, S // 16, S // 16)
    with torch.no_grad():
        ref = model.autoppn(emb)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model.autoppn(emb)
    assert out["heatmap_logits"].dtype == torch.float32 and out["boxes"].dtype == torch.float32
    # fresh heads: logits within ~1e-3 of the focal prior; in bf16 they would collapse to a handful of values
    heat = out["heatmap_logits"]
    assert heat.unique().numel() > 0.5 * heat.numel()
    assert heat.bfloat16().unique().numel() < 0.05 * heat.numel()
    # the stem still runs in bf16 (its input differs by bf16 rounding): the heads' output stays close to fp32
    torch.testing.assert_close(heat, ref["heatmap_logits"], atol=2e-3, rtol=0)


def test_prompt_positional_encodings_are_fp32_under_autocast():
    torch.manual_seed(0)
    pe = litesam_pl.create_model("litesam", img_size=640).prompt_encoder
    coords = torch.rand(8, 1, 2) * 640
    boxes = torch.rand(8, 4) * 320
    boxes[:, 2:] += boxes[:, :2]
    c, l = prompt_layout((coords, torch.ones(8, 1, dtype=torch.long)), boxes)
    with torch.no_grad():
        ref, ref_pe = embed_prompts(pe, c, l), dense_pe(pe)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got, got_pe = embed_prompts(pe, c, l), dense_pe(pe)
            raw = pe.pe_layer.forward_with_coords(c + 0.5, pe.input_image_size)  # what SAM's encoder would do
    assert got.dtype == got_pe.dtype == torch.float32
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_pe, ref_pe, atol=1e-5, rtol=0)
    assert (raw.float() - ref[..., : raw.shape[-1]]).abs().max() > 0.05  # the error this avoids


def test_cpu_and_gpu_pooling_paths_give_the_same_encoder():
    """The CPU default (``box_mean``, prefix sums) against ``F.avg_pool2d`` (the path CUDA, tracing and ONNX use),
    through the whole LiteViT encoder, forward and backward."""
    torch.manual_seed(0)
    enc = litesam_pl.create_model("litesam", img_size=S).image_encoder
    x = torch.randn(2, 3, S, S)

    def run():
        xi = x.clone().requires_grad_(True)
        y = enc(xi)
        (g,) = torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum(), xi)
        return y.detach(), g

    calls = {"box_mean": 0}
    real_box_mean = mixers.box_mean

    def counting_box_mean(t, k):
        calls["box_mean"] += 1
        return real_box_mean(t, k)

    with mock.patch.object(mixers, "box_mean", counting_box_mean):
        y_cpu, g_cpu = run()
        n_cpu = calls["box_mean"]
        with mixers.cpu_pooling("avg_pool2d"):
            y_gpu, g_gpu = run()
    assert n_cpu > 0  # the CPU path really ran
    assert calls["box_mean"] == n_cpu  # and the second run did not use it
    torch.testing.assert_close(y_cpu, y_gpu, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g_cpu, g_gpu, atol=1e-5, rtol=1e-4)
