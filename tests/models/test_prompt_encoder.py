"""``models.prompt_encoder``: boxes as dense mask prompts too (``box_mask_prompt``), the same on every decode path."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from segment_anything.modeling import PromptEncoder

import litesam_pl
from litesam_pl.evaluation.prompting import PromptPredictor
from litesam_pl.inference.sam_compat import predictor as sam_predictor
from litesam_pl.models.prompt_encoder import (BoxMaskPromptEncoder, box_mask_logits, dense_embeddings,
                                              uses_box_mask)

SIZE = 64


@pytest.fixture(scope="module")
def box_model():
    torch.manual_seed(0)
    model = litesam_pl.create_model("litesam", img_size=SIZE, box_mask_prompt=True).eval()
    # a random mask_downscaling is nearly constant over in / out cells: make the box clearly matter
    with torch.no_grad():
        for p in model.prompt_encoder.mask_downscaling.parameters():
            p.mul_(4.0)
    return model


def test_box_mask_logits_cells():
    m = box_mask_logits(torch.tensor([[4.0, 8.0, 12.0, 20.0]]), (8, 8), cell=4.0)  # centres at 2, 6, 10, ...
    assert m.shape == (1, 1, 8, 8)
    in_box = (m[0, 0] > -1).nonzero().tolist()
    assert in_box == [[r, c] for r in (2, 3, 4) for c in (1, 2)]  # y centres 10, 14, 18; x centres 6, 10
    # box centre (8, 14), half-sides 4 and 6: cell (3, 1) at (6, 14) has r = 0.5, cell (2, 1) at (6, 10) has
    # r = sqrt(0.25 + 4/9); every outside cell is -1
    assert m[0, 0, 3, 1].item() == pytest.approx(0.5)
    assert m[0, 0, 2, 1].item() == pytest.approx(1 - (0.25 + 4 / 9) ** 0.5)
    assert (m[0, 0][m[0, 0] <= -1] == -1).all() and int((m == -1).sum()) == 64 - 6


def test_box_mask_logits_zero_on_the_inscribed_ellipse():
    """Positive exactly inside the ellipse inscribed in the box, the box's corners in [1 - sqrt(2), 0)."""
    box = torch.tensor([[0.0, 0.0, 64.0, 32.0]])
    m = box_mask_logits(box, (16, 16), cell=4.0)[0, 0]
    ys, xs = torch.meshgrid((torch.arange(16) + 0.5) * 4, (torch.arange(16) + 0.5) * 4, indexing="ij")
    r2 = ((xs - 32) / 32) ** 2 + ((ys - 16) / 16) ** 2
    assert torch.equal(m > 0, (r2 < 1) & (ys <= 32))
    assert m[0, 0].item() < 0 and m[0, 0].item() >= 1 - 2 ** 0.5 and m[4, 0].item() > -1  # a corner, in the box
    assert (m[8:] == -1).all()  # below the box


def test_same_parameters_as_sams_prompt_encoder(box_model):
    plain = litesam_pl.create_model("litesam", img_size=SIZE)
    assert not uses_box_mask(plain.prompt_encoder) and uses_box_mask(box_model.prompt_encoder)
    assert type(plain.prompt_encoder) is PromptEncoder and isinstance(box_model.prompt_encoder, BoxMaskPromptEncoder)
    assert plain.state_dict().keys() == box_model.state_dict().keys()
    plain.load_state_dict(box_model.state_dict())  # checkpoints load either way
    assert box_model.model_config["kwargs"]["box_mask_prompt"] is True  # rebuilt from a checkpoint's config


def test_forward_adds_the_box_mask_only_for_boxes(box_model):
    pe = box_model.prompt_encoder
    no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, *pe.image_embedding_size)
    pts = (torch.tensor([[[20.0, 20.0]]]), torch.tensor([[1]]))
    _, dense = pe(points=pts, boxes=None, masks=None)
    assert torch.equal(dense, no_mask)
    box = torch.tensor([[8.0, 8.0, 40.0, 30.0]])
    _, dense = pe(points=None, boxes=box, masks=None)
    assert torch.allclose(dense, pe.box_dense(box)) and not torch.allclose(dense, no_mask)
    assert torch.allclose(dense_embeddings(pe, box, 1, pe.image_embedding_size), dense)
    other = pe.box_dense(torch.tensor([[30.0, 30.0, 60.0, 60.0]]))
    assert not torch.allclose(other, dense)  # where the box is shows in the dense prompt
    explicit = torch.zeros(1, 1, *(4 * s for s in pe.image_embedding_size))
    _, dense = pe(points=None, boxes=box, masks=explicit)  # an explicit mask prompt wins
    assert torch.allclose(dense, pe.mask_downscaling(explicit))
    with pytest.raises(ValueError, match="2 boxes for 1 prompts"):
        dense_embeddings(pe, torch.zeros(2, 4), 1, pe.image_embedding_size)


def test_every_box_decode_path_gives_the_same_masks(box_model):
    """Training's batched decoder, its per-image reference, the benchmarks' PromptPredictor and SamPredictor."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    boxes = torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 10.0, 60.0, 50.0]])
    with torch.no_grad():
        emb = box_model.image_encoder(box_model.preprocess(torch.as_tensor(image).permute(2, 0, 1)[None].float()))
        batched, iou_b = box_model.predict_masks(emb, boxes=boxes[None], multimask_output=False)
        per_image, iou_p = box_model._predict_masks_per_image(emb, box_model.prompt_encoder.get_dense_pe(), None,
                                                              boxes[None], False)
    assert torch.allclose(batched, per_image, atol=1e-4) and torch.allclose(iou_b, iou_p, atol=1e-5)
    pp = PromptPredictor(box_model)
    pp.set_image(image)
    masks, scores = pp.predict_boxes(boxes.numpy())
    up = box_model.postprocess_masks(batched[0], (SIZE, SIZE), (SIZE, SIZE))[:, 0] > 0
    assert np.array_equal(masks, up.numpy()) and np.allclose(scores, iou_b[0, :, 0].numpy(), atol=1e-5)
    sp = sam_predictor(box_model)
    sp.set_image(image)
    m, s, _ = sp.predict(box=boxes[1].numpy(), multimask_output=False)
    assert np.array_equal(m[0], up[1].numpy())
    # the plain model's masks differ: the box mask is really in the decoder's input
    plain = litesam_pl.create_model("litesam", img_size=SIZE).eval()
    plain.load_state_dict(box_model.state_dict())
    with torch.no_grad():
        other, _ = plain.predict_masks(emb, boxes=boxes[None], multimask_output=False)
    assert not torch.allclose(other, batched, atol=1e-3)


def test_segevery_decodes_box_prompts_through_the_box_mask(box_model):
    """SegEvery's point+box prompts take SAM's decoder with the dense box mask (fast and stock options agree)."""
    img = np.random.default_rng(1).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    kw = dict(prompts="autoppn", top_n=8, score_threshold=0.0, output_mode="tensors", pred_iou_thresh=0,
              stability_score_thresh=0, box_nms_thresh=1.0)
    fast = litesam_pl.segment_everything(box_model, img, decoder="fast", **kw)
    stock = litesam_pl.segment_everything(box_model, img, decoder="stock", **kw)
    assert len(fast["masks"]) > 0 and torch.equal(fast["masks"], stock["masks"])


def test_training_step_trains_the_mask_prompt_path(tmp_path):
    from litesam_pl.modules import BackboneBoxModule

    module = BackboneBoxModule(model={"name": "litesam", "kwargs": {"autoppn": False, "box_mask_prompt": True},
                                      "img_size": SIZE})
    down = module.model.prompt_encoder.mask_downscaling
    assert all(p.requires_grad for p in down.parameters())  # fed the box masks: trained
    plain = BackboneBoxModule(model={"name": "litesam", "kwargs": {"autoppn": False}, "img_size": SIZE})
    assert not any(p.requires_grad for p in plain.model.prompt_encoder.mask_downscaling.parameters())
    emb = module.model.image_encoder(torch.randn(1, 3, SIZE, SIZE))
    low, _ = module.model.predict_masks(emb, boxes=torch.tensor([[[4.0, 4.0, 40.0, 40.0]]]), multimask_output=False)
    low.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in down.parameters())


def test_onnx_decoder_feeds_the_box_mask(box_model, tmp_path):
    pytest.importorskip("onnxruntime")
    from litesam_pl.inference.export import export_onnx

    report = export_onnx(box_model, tmp_path / "onnx", top_n=8, num_prompts=3)
    assert max(report["max_abs_diff"].values()) < 1e-4, report["max_abs_diff"]
    assert json.loads((tmp_path / "onnx" / "report.json").read_text())["max_abs_diff"] == report["max_abs_diff"]


def test_load_model_at_another_input_side(box_model, tmp_path):
    """``load_model(path, img_size=N)``: the same weights at another side, the box mask prompt rebuilt for it."""
    from litesam_pl.inference.export import export_weights
    from litesam_pl.models.checkpoint import load_model

    path = export_weights(box_model, tmp_path / "m.pt")
    big = load_model(path, img_size=2 * SIZE)
    assert big.image_encoder.img_size == 2 * SIZE and uses_box_mask(big.prompt_encoder)
    assert big.prompt_encoder.input_image_size == (2 * SIZE, 2 * SIZE) and big.prompt_encoder.mask_cell == 4.0
    for (k, a), b in zip(box_model.state_dict().items(), big.state_dict().values()):
        assert torch.equal(a, b), k
    assert load_model(path).image_encoder.img_size == SIZE
