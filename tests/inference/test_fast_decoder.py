"""Our batched mask decoder (litesam_pl.inference.fast_decoder) equals SAM's MaskDecoder."""
from __future__ import annotations

import pytest
import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

from litesam_pl.inference.fast_decoder import FastMaskDecoder, embed_prompts, stock_decode

TOL = 1e-4




def _parts(dim: int = 64, depth: int = 2, side: int = 8, mlp_dim: int = 128, seed: int = 0):
    torch.manual_seed(seed)
    size = side * 16
    pe = PromptEncoder(embed_dim=dim, image_embedding_size=(side, side), input_image_size=(size, size), mask_in_chans=4)
    md = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=depth, embedding_dim=dim, mlp_dim=mlp_dim, num_heads=8),
        transformer_dim=dim,
        iou_head_depth=3,
        iou_head_hidden_dim=32,
    )
    # non-trivial LayerNorm / bias values so every term of the rewrite is exercised
    with torch.no_grad():
        for mod in md.modules():
            if isinstance(mod, (torch.nn.LayerNorm, torch.nn.Linear)) and mod.bias is not None:
                mod.bias.normal_(0, 0.5)
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.normal_(1, 0.3)
        pe.no_mask_embed.weight.normal_(0, 1)
    return pe.eval(), md.eval(), torch.randn(1, dim, side, side), size


def _prompts(n: int, size: int, kind: str, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(n, 1, 2, generator=g) * size
    box = torch.sort(torch.rand(n, 2, 2, generator=g) * size, dim=1).values.reshape(n, 4)
    if kind == "point":
        coords, labels = torch.cat([pts, torch.zeros(n, 1, 2)], 1), torch.tensor([[1, -1]]).repeat(n, 1)
        stock = dict(points=(pts, torch.ones(n, 1)), boxes=None)
    elif kind == "box":
        coords, labels = box.reshape(n, 2, 2), torch.tensor([[2, 3]]).repeat(n, 1)
        stock = dict(points=None, boxes=box)
    else:
        coords, labels = torch.cat([pts, box.reshape(n, 2, 2)], 1), torch.tensor([[1, 2, 3]]).repeat(n, 1)
        stock = dict(points=(pts, torch.ones(n, 1)), boxes=box)
    return coords, labels, stock


@pytest.mark.parametrize("kind", ["point", "box", "point+box"])
def test_embed_prompts_matches_prompt_encoder(kind):
    pe, _, _, size = _parts()
    coords, labels, stock = _prompts(5, size, kind)
    with torch.no_grad():
        ref, _ = pe(masks=None, **stock)
        got = embed_prompts(pe, coords, labels)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("kind", ["point", "point+box"])
@pytest.mark.parametrize("multimask", [True, False])
def test_fast_decoder_equals_stock(depth, kind, multimask):
    pe, md, emb, size = _parts(depth=depth)
    coords, labels, _ = _prompts(6, size, kind)
    with torch.no_grad():
        sparse = embed_prompts(pe, coords, labels)
        ref_m, ref_i = stock_decode(md, pe, emb, sparse, multimask)
        fast = FastMaskDecoder(md, pe)
        assert fast.supported
        got_m, got_i = fast.decode(emb, sparse, multimask)
    assert got_m.shape == ref_m.shape == (6, 3 if multimask else 1, 32, 32)
    assert got_i.shape == ref_i.shape
    assert (got_m - ref_m).abs().max() < TOL
    assert (got_i - ref_i).abs().max() < TOL


def test_fast_decoder_all_tokens_and_sam_b_width():
    """SAM-B's decoder width (256 channels, mlp 2048) and the all-token output used by the ONNX graph."""
    pe, md, emb, size = _parts(dim=256, mlp_dim=2048, side=6)
    coords, labels, _ = _prompts(3, size, "point")
    with torch.no_grad():
        sparse = embed_prompts(pe, coords, labels)
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(3, -1, 6, 6)
        ref_m, ref_i = md.predict_masks(emb, pe.get_dense_pe(), sparse, dense)
        fast = FastMaskDecoder(md, pe)
        got_m, got_i = fast(fast.prepare_image(emb), sparse, None)
    assert (got_m - ref_m).abs().max() < TOL
    assert (got_i - ref_i).abs().max() < TOL


def test_chunking_equals_one_call():
    pe, md, emb, size = _parts()
    coords, labels, _ = _prompts(11, size, "point+box")
    with torch.no_grad():
        sparse = embed_prompts(pe, coords, labels)
        fast = FastMaskDecoder(md, pe)
        a = fast.decode(emb, sparse, True, chunk_size=None)
        b = fast.decode(emb, sparse, True, chunk_size=4)
    assert (a[0] - b[0]).abs().max() < 1e-5 and (a[1] - b[1]).abs().max() < 1e-5


def test_reuses_weights_without_copies():
    pe, md, emb, size = _parts()
    fast = FastMaskDecoder(md, pe)
    assert list(fast.parameters()) == []  # nothing registered, nothing copied
    coords, labels, _ = _prompts(2, size, "point")
    with torch.no_grad():
        sparse = embed_prompts(pe, coords, labels)
        before = fast.decode(emb, sparse, True)[0]
        md.output_hypernetworks_mlps[1].layers[-1].bias.add_(1.0)
        after = fast.decode(emb, sparse, True)[0]
        ref = stock_decode(md, pe, emb, sparse, True)[0]
    assert (after - before).abs().max() > 1e-3
    assert (after - ref).abs().max() < TOL


def test_unsupported_transformer_falls_back_to_stock():
    pe, md, emb, size = _parts()

    class Wrapped(torch.nn.Module):  # not a TwoWayTransformer
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *a):
            return self.inner(*a)

    md.transformer = Wrapped(md.transformer)
    fast = FastMaskDecoder(md, pe)
    assert not fast.supported
    coords, labels, _ = _prompts(3, size, "point")
    with torch.no_grad():
        sparse = embed_prompts(pe, coords, labels)
        got = fast.decode(emb, sparse, True, chunk_size=2)
        ref = stock_decode(md, pe, emb, sparse, True)
    torch.testing.assert_close(got[0], ref[0])


def test_empty_prompt_set():
    pe, md, emb, _ = _parts()
    fast = FastMaskDecoder(md, pe)
    with torch.no_grad():
        m, i = fast.decode(emb, torch.zeros(0, 2, 64), True)
    assert m.shape == (0, 3, 32, 32) and i.shape == (0, 3)
