"""LiteViT, neck, LiteSAM composition, SAM compatibility, registry and load_model."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import litesam_pl
from litesam_pl.models import (
    LITEVIT_CONFIGS,
    MIXERS,
    LiteSAM,
    LiteViT,
    build_mixer,
    create_model,
    list_models,
    load_model,
)
from litesam_pl.models.mixers import MSPM, MultiScalePoolMixer, box_mean
from litesam_pl.models.checkpoint import EXPORT_FORMAT
from litesam_pl.models.registry import build_from_config, model_config




@pytest.fixture(scope="module")
def litesam() -> LiteSAM:
    torch.manual_seed(0)
    return create_model("litesam").eval()


def _ceil_sizes(h, w):
    return [(math.ceil(h / s), math.ceil(w / s)) for s in (4, 8, 16, 32)]


# --------------------------------------------------------------------------------------------- LiteViT + mixers
@pytest.mark.parametrize("name,device", [("litevit", "cpu"), ("litevit_2x", "meta"), ("litevit_3x", "meta")])
def test_litevit_odd_size_shapes(name, device):
    with torch.device(device):
        net = create_model(name).eval()
    assert net.out_channels == list(LITEVIT_CONFIGS[name]["embed_dims"])
    with torch.no_grad():
        feats = net(torch.randn(1, 3, 200, 328, device=device))
    assert len(feats) == 4
    for f, c, hw in zip(feats, net.out_channels, _ceil_sizes(200, 328)):
        assert f.shape == (1, c, *hw)
        assert device == "meta" or torch.isfinite(f).all()


@pytest.mark.parametrize("size", [640, 1024])
def test_full_size_shapes_on_meta(size):
    """Full-resolution shapes (meta device: shapes without compute) for the backbone and the whole LiteSAM."""
    net = create_model("litevit").to("meta")
    feats = net(torch.empty(2, 3, size, size, device="meta"))
    expected = [(2, c, size // s, size // s) for c, s in zip(net.out_channels, (4, 8, 16, 32))]
    assert [tuple(f.shape) for f in feats] == expected
    model = create_model("litesam", img_size=size).to("meta").requires_grad_(False)
    emb = model.image_encoder(torch.empty(2, 3, size, size, device="meta"))
    assert emb.shape == (2, 256, size // 16, size // 16)
    out = model.autoppn(emb)
    p = size // model.autoppn.stride
    assert model.autoppn.stride == 8
    assert out["heatmap_logits"].shape == (2, 3, p, p) and out["boxes"].shape == (2, 3, 4, p, p)
    masks, iou = model.predict_masks(emb, boxes=torch.zeros(2, 5, 4, device="meta"), multimask_output=True)
    assert masks.shape == (2, 5, 3, size // 4, size // 4) and iou.shape == (2, 5, 3)


@pytest.mark.parametrize("mixer", sorted(MIXERS) + [1, 5])
def test_every_mixer_design_builds_and_runs(mixer):
    net = create_model("litevit", mixer=str(mixer)).eval()
    with torch.no_grad():
        feats = net(torch.randn(1, 3, 64, 96))
    assert [f.shape[-2:] for f in feats] == [torch.Size(hw) for hw in _ceil_sizes(64, 96)]


def test_mspm_starts_as_design_4_and_learns_a_fusion():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 11, 13)
    mspm, design4 = build_mixer("mspm", 8), build_mixer("pool3", 8)
    assert isinstance(mspm, MSPM) and isinstance(design4, MultiScalePoolMixer)
    design4.dwconv.load_state_dict(mspm.dwconv.state_dict())
    torch.testing.assert_close(mspm(x), design4(x))
    with torch.no_grad():
        mspm.fuse_weight[0].fill_(1.0)  # pool3 only
        mspm.fuse_weight[1:3].zero_()
        mspm.dwconv.weight.zero_()
        mspm.dwconv.bias.zero_()
    pooled = torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    torch.testing.assert_close(mspm(x), pooled - x)
    with pytest.raises(ValueError, match="unknown mixer"):
        build_mixer("attention", 8)


@pytest.mark.parametrize("k", [1, 3, 5, 7, 9])
@pytest.mark.parametrize("shape", [(2, 3, 11, 13), (1, 2, 1, 1), (1, 2, 3, 17)])
def test_box_mean_equals_avg_pool_without_padding_counts(k, shape):
    # the CPU fast path of the MSPM pooling: same values and gradients as avg_pool2d(count_include_pad=False)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    ref = torch.nn.functional.avg_pool2d(x, k, 1, k // 2, count_include_pad=False)
    got = box_mean(x, k)
    torch.testing.assert_close(got, ref)
    g_ref, = torch.autograd.grad((ref ** 2).sum(), x)
    g_got, = torch.autograd.grad((got ** 2).sum(), x)
    torch.testing.assert_close(g_got, g_ref)
    half = box_mean(x.detach().bfloat16(), k)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.double(), ref.detach(), atol=2e-2, rtol=2e-2)


def test_box_mean_rejects_even_windows():
    with pytest.raises(ValueError, match="odd"):
        box_mean(torch.zeros(1, 1, 4, 4), 4)


def test_litevit_rejects_bad_config():
    with pytest.raises(ValueError, match="4 stages"):
        LiteViT(embed_dims=(8, 16, 32), depths=(1, 1, 1), mlp_ratios=(1, 1, 1))


# --------------------------------------------------------------------------------------------- LiteSAM
def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = create_model("litesam").train()
    x = torch.randn(2, 3, 32, 32)
    emb = model.image_encoder(x)
    ppn = model.autoppn(emb)
    loss = ppn["heatmap_logits"].sigmoid().mean() + ppn["boxes"].mean()
    coords = torch.rand(2, 3, 2, 2) * 32
    labels = torch.tensor([1, 0]).expand(2, 3, 2)
    boxes = torch.tensor([4.0, 4.0, 20.0, 25.0]).expand(2, 3, 4)
    for multimask in (True, False):
        m, iou = model.predict_masks(emb, points=(coords, labels), boxes=boxes, multimask_output=multimask)
        loss = loss + m.mean() + iou.mean()
    m, iou = model.predict_masks(emb, points=(coords, labels), multimask_output=True)  # pads with not_a_point
    loss = loss + m.mean() + iou.mean()
    loss.backward()
    # mask inputs are never given to predict_masks, so the prompt encoder's mask branch is the only unused part
    missing = [
        n for n, p in model.named_parameters()
        if not n.startswith("prompt_encoder.mask_downscaling") and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert missing == []


def test_predict_masks_shapes_and_batch_independence(litesam):
    torch.manual_seed(1)
    with torch.no_grad():
        emb = litesam.image_encoder(torch.randn(2, 3, 64, 64))
        coords = torch.rand(2, 4, 1, 2) * 64
        labels = torch.ones(2, 4, 1, dtype=torch.long)
        masks, iou = litesam.predict_masks(emb, points=(coords, labels), multimask_output=True)
        assert masks.shape == (2, 4, 3, 16, 16) and iou.shape == (2, 4, 3)
        single, single_iou = litesam.predict_masks(emb[1:], points=(coords[1:], labels[1:]), multimask_output=True)
    torch.testing.assert_close(masks[1:], single, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(iou[1:], single_iou, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError):
        litesam.predict_masks(emb)


def test_sam_predictor_round_trip(litesam):
    from segment_anything import SamPredictor

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    predictor = SamPredictor(litesam)
    predictor.set_image(image)
    assert predictor.features.shape == (1, 256, 40, 40)
    masks, scores, logits = predictor.predict(
        point_coords=np.array([[20.0, 15.0]]), point_labels=np.array([1]), box=np.array([5, 5, 40, 30]),
        multimask_output=True,
    )
    assert masks.shape == (3, 40, 56) and masks.dtype == bool
    assert scores.shape == (3,) and logits.shape == (3, 160, 160)
    assert np.isfinite(scores).all()


def test_sam_forward_batched_input(litesam):
    image = torch.randint(0, 256, (3, 640, 480)).float()
    with torch.no_grad():
        out = litesam(
            [{"image": image, "original_size": (96, 72), "boxes": torch.tensor([[10.0, 10.0, 300.0, 400.0]]),
              "point_coords": torch.tensor([[[100.0, 120.0]]]), "point_labels": torch.tensor([[1]])}],
            multimask_output=False,
        )
    assert out[0]["masks"].shape == (1, 1, 96, 72) and out[0]["masks"].dtype == torch.bool
    assert out[0]["low_res_logits"].shape == (1, 1, 160, 160) and out[0]["iou_predictions"].shape == (1, 1)


def test_sam_automatic_mask_generator_runs():
    from segment_anything import SamAutomaticMaskGenerator

    torch.manual_seed(0)
    model = create_model("litesam", img_size=256).eval()  # AMG resizes to img_size: keep it small here
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    gen = SamAutomaticMaskGenerator(model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    out = gen.generate(image)
    assert isinstance(out, list)
    for record in out:
        assert record["segmentation"].shape == (32, 48)


def test_litesam_options():
    m = create_model("litesam", autoppn=False, ppn_stem="conv")
    assert m.autoppn is None
    with pytest.raises(RuntimeError):
        m.forward_autoppn(torch.zeros(1, 256, 2, 2))
    m = create_model("litesam", ppn_stem="conv", ppn_groups=1, mixer="pool", img_size=1024)
    assert m.autoppn.num_groups == 1 and m.autoppn.stem_type == "conv" and m.image_encoder.img_size == 1024
    assert m.image_encoder.backbone.mixer == "pool"
    assert m.prompt_encoder.image_embedding_size == (64, 64)
    assert model_config(create_model("litevit", img_size=1024))["kwargs"]["variant"] == "litevit"  # img_size ignored


# --------------------------------------------------------------------------------------------- registry
REGISTERED = ["litevit", "litevit_2x", "litevit_3x", "litesam", "litesam_2x", "litesam_3x", "sam_vit_b"]


@pytest.mark.parametrize("name", REGISTERED)
def test_every_registered_name_builds(name):
    with torch.device("meta"):  # structure only: skips the (slow for ViT-B) random init
        model = create_model(name)
    assert name in list_models()
    assert model_config(model)["name"] == name
    if name.startswith(("litesam", "sam_")):
        assert isinstance(model, LiteSAM) and model.autoppn is not None
        size = model.image_encoder.img_size
        assert size == (1024 if name == "sam_vit_b" else 640)
        emb = model.image_encoder(torch.empty(1, 3, size, size, device="meta"))
        assert emb.shape == (1, 256, size // 16, size // 16)
        assert model.autoppn(emb)["heatmap_logits"].shape == (1, 3, size // 8, size // 8)
    else:
        assert len(model(torch.empty(1, 3, 64, 64, device="meta"))) == 4


def test_sam_vit_b_runs_with_random_weights():
    model = create_model("sam_vit_b", img_size=128).eval()
    assert sum(p.numel() for p in model.image_encoder.parameters()) > 85e6  # ViT-B
    with torch.no_grad():
        emb = model.image_encoder(torch.randn(1, 3, 128, 128))
    assert emb.shape == (1, 256, 8, 8) and torch.isfinite(emb).all()


def test_timm_backbone_and_litesam_on_it():
    net = create_model("timm:mobilenetv2_100").eval()
    with torch.no_grad():
        feats = net(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2] and [f.shape[1] for f in feats] == net.out_channels
    model = litesam_pl.create_model("litesam", backbone="timm:mobilenetv2_100").eval()
    with torch.no_grad():
        assert model.image_encoder(torch.randn(1, 3, 64, 64)).shape == (1, 256, 4, 4)
    shuffle = create_model("timm:shufflenet_v2_x1_0")  # timm lacks it: torchvision's, random weights
    with torch.no_grad():
        assert [f.shape[-1] for f in shuffle(torch.randn(1, 3, 64, 64))] == [16, 8, 4, 2]


def test_unknown_names_give_clear_errors():
    assert set(list_models()) == set(REGISTERED)
    with pytest.raises(ValueError) as err:
        create_model("litesam_9x")
    for name in ("litevit", "litesam", "sam_vit_b", "timm:"):
        assert name in str(err.value)
    with pytest.raises(TypeError, match="unknown option"):
        create_model("litesam", not_an_option=1)
    with pytest.raises(ValueError, match="timm has no model"):
        create_model("timm:definitely_not_a_model")
    with pytest.raises(ValueError, match="only applies to LiteViT"):
        create_model("litesam", backbone="timm:mobilenetv2_100", mixer="pool")


def test_model_config_round_trip():
    model = create_model("litesam", ppn_groups=1, mixer="pool2")
    cfg = model_config(model)
    assert cfg["kwargs"]["ppn_groups"] == 1 and cfg["kwargs"]["mixer"] == "pool2"
    rebuilt = build_from_config(cfg)
    a, b = model.state_dict(), rebuilt.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    with pytest.raises(ValueError, match="malformed"):
        build_from_config({"kwargs": {}})


# --------------------------------------------------------------------------------------------- load_model
def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_load_model_export_and_lightning_checkpoint(tmp_path):
    torch.manual_seed(3)
    model = create_model("litesam", ppn_groups=1)
    export = tmp_path / "model.pt"
    torch.save({"format": EXPORT_FORMAT, "model": model_config(model), "state_dict": model.state_dict()}, export)
    loaded = litesam_pl.load_model(str(export))
    assert _same_weights(model, loaded) and not loaded.training
    assert model_config(loaded) == model_config(model)

    ckpt = tmp_path / "last.ckpt"
    torch.save(
        {
            "epoch": 1,
            "global_step": 10,
            "hyper_parameters": {"model_name": "litesam", "model_kwargs": {"ppn_groups": 1}, "lr": 4e-5},
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        },
        ckpt,
    )
    assert _same_weights(model, load_model(ckpt))


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")
    unknown = tmp_path / "unknown.pt"
    torch.save({"format": "something-else", "weights": {}}, unknown)
    with pytest.raises(ValueError, match="unknown format"):
        load_model(unknown)
    corrupted = tmp_path / "corrupted.pt"
    corrupted.write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match="not a loadable"):
        load_model(corrupted)


def test_lightning_checkpoint_names_its_model_under_its_own_key(tmp_path):
    """``checkpoint["litesam_model"]`` (``write_model_entry``) names the network; it wins over the hparams of
    older checkpoints, which are only the fallback."""
    from litesam_pl.models.checkpoint import MODEL_KEY, write_model_entry

    torch.manual_seed(4)
    model = create_model("litesam", img_size=64, ppn_groups=1)
    blob = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {"model_name": "litesam_2x", "renamed_kwargs": {}}}
    write_model_entry(blob, model)
    assert blob[MODEL_KEY] == model_config(model)
    ckpt = tmp_path / "new.ckpt"
    torch.save(blob, ckpt)
    loaded = load_model(ckpt)
    assert _same_weights(model, loaded) and model_config(loaded) == model_config(model)
    del blob["hyper_parameters"]
    torch.save(blob, ckpt)
    assert _same_weights(model, load_model(ckpt))
