"""SA1BDataModule and the sample stream: batch contract, alignment, exactly-once validation, bad samples, errors."""
from __future__ import annotations

import io
import json
import tarfile
import types
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from litesam_pl.data.collate import BATCH_KEYS
from litesam_pl.data.datamodule import SA1BDataModule
from litesam_pl.data.rle import encode_mask
from litesam_pl.data.rle_sample import RunLengths
from litesam_pl.data.sa1b_stream import SampleProcessor, count_samples, expand_urls
from litesam_pl.data.transforms import PIXEL_MEAN, PIXEL_STD, decode_image, normalize_images, pad_image

MEAN32, STD32 = np.asarray(PIXEL_MEAN, np.float32), np.asarray(PIXEL_STD, np.float32)  # as the loader computes

S = 128


# ------------------------------------------------------------------------------------------------ helpers
def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _record(key: str, masks: list[np.ndarray], hw: tuple[int, int]) -> bytes:
    anns = []
    for j, m in enumerate(masks):
        rle = encode_mask(m)
        anns.append({"id": j, "segmentation": rle, "bbox": [float(v) for v in mask_utils.toBbox(
            {"size": rle["size"], "counts": rle["counts"].encode()})], "area": int(m.sum()),
            "predicted_iou": 0.9, "stability_score": 0.95, "point_coords": [[0.0, 0.0]],
            "crop_box": [0, 0, hw[1], hw[0]]})
    return json.dumps({"image": {"image_id": 1, "width": hw[1], "height": hw[0], "file_name": f"{key}.jpg"},
                       "annotations": anns}).encode()


def _colour_scene(rng: np.random.Generator, hw=(90, 120), n=6) -> tuple[np.ndarray, list[np.ndarray]]:
    """Image red inside the masks, blue outside; non-overlapping rectangles/ellipses."""
    H, W = hw
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 2] = 255
    masks, taken = [], np.zeros((H, W), bool)
    while len(masks) < n:
        m = np.zeros((H, W), np.uint8)
        cy, cx = int(rng.integers(10, H - 10)), int(rng.integers(10, W - 10))
        ry, rx = int(rng.integers(3, 16)), int(rng.integers(3, 20))
        if rng.random() < 0.5:
            cv2.ellipse(m, (cx, cy), (rx, ry), 0, 0, 360, 1, -1)
        else:
            m[max(cy - ry, 0):cy + ry, max(cx - rx, 0):cx + rx] = 1
        m = m.astype(bool)
        if (m & taken).any():
            continue
        taken |= m
        masks.append(m)
    img[taken] = (255, 0, 0)
    return img, masks


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img)
    assert ok
    return buf.tobytes()


def _jpg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def _denorm(image: torch.Tensor) -> np.ndarray:
    """[3, S, S] uint8 (the batch's pixels) -> [S, S, 3]."""
    assert image.dtype == torch.uint8
    return image.permute(1, 2, 0).numpy()


def _check_contract(batch: dict, B: int, K: int, G: int = 3, jitter: bool = False) -> None:
    P = S // 8
    assert set(batch) == set(BATCH_KEYS)
    spec = {
        "image": (torch.uint8, (B, 3, S, S)), "masks": (torch.bool, (B, K, S, S)),
        "boxes": (torch.float32, (B, K, 4)), "gt_boxes": (torch.float32, (B, K, 4)),
        "points": (torch.float32, (B, K, 1, 2)), "point_labels": (torch.int64, (B, K, 1)),
        "valid": (torch.bool, (B, K)), "ppn_heatmap": (torch.float32, (B, G, P, P)),
        "ppn_boxes": (torch.float32, (B, G, 4, P, P)), "ppn_box_weight": (torch.float32, (B, G, P, P)),
        "ppn_ignore": (torch.bool, (B, P, P)), "original_size": (torch.int64, (B, 2)),
        "input_size": (torch.int64, (B, 2)), "num_skipped": (torch.int64, (B,)),
    }
    for k, (dtype, shape) in spec.items():
        assert batch[k].dtype == dtype, k
        assert tuple(batch[k].shape) == shape, (k, tuple(batch[k].shape))
    assert len(batch["key"]) == B and all(isinstance(k, str) for k in batch["key"])
    assert len(batch["all_boxes"]) == B
    assert all(b.dtype == torch.float32 and b.ndim == 2 and b.shape[1] == 4 for b in batch["all_boxes"])
    h = batch["ppn_heatmap"]
    assert (h >= 0).all() and (h <= 1).all()
    assert (batch["point_labels"] == 1).all()
    assert (batch["ppn_boxes"] >= 0).all()
    assert (batch["input_size"] <= S).all()
    if not jitter:  # resize-longest-side to S
        assert (batch["input_size"].max(1).values == S).all()
    # padding (outside input_size) is False in masks and zero in the image, and zero once normalised
    norm = normalize_images(batch["image"], batch["input_size"])
    for b in range(B):
        ih, iw = batch["input_size"][b].tolist()
        assert not batch["masks"][b, :, ih:].any() and not batch["masks"][b, :, :, iw:].any()
        assert (batch["image"][b, :, ih:] == 0).all() and (batch["image"][b, :, :, iw:] == 0).all()
        assert (norm[b, :, ih:] == 0).all() and (norm[b, :, :, iw:] == 0).all()
        for k in range(K):
            if not batch["valid"][b, k]:
                assert not batch["masks"][b, k].any()
                continue
            x, y = batch["points"][b, k, 0].long().tolist()
            assert batch["masks"][b, k, y, x], "point prompt outside its mask"
            ys, xs = torch.nonzero(batch["masks"][b, k], as_tuple=True)
            x0, y0, x1, y1 = batch["gt_boxes"][b, k].tolist()
            assert xs.min() >= x0 - 1 and xs.max() + 1 <= x1 + 1 and ys.min() >= y0 - 1 and ys.max() + 1 <= y1 + 1


@pytest.fixture(scope="module")
def colour_shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("colour")
    rng = np.random.default_rng(0)
    for t in range(2):
        members = []
        for i in range(3):
            key = f"sa_{t * 3 + i}"
            hw = [(90, 120), (120, 90), (64, 64)][i]
            img, masks = _colour_scene(rng, hw)
            members += [(f"{key}.png", _png(img)), (f"{key}.json", _record(key, masks, hw))]
        _write_tar(out / f"sa_{t:06d}.tar", members)
    return out


# ------------------------------------------------------------------------------------------------ RLE sampling
def test_run_lengths_match_pycocotools():
    rng = np.random.default_rng(0)
    H, W = 37, 53
    masks = [rng.random((H, W)) < p for p in (0.0, 0.02, 0.5, 0.98, 1.0)]
    masks.append(np.zeros((H, W), bool))
    masks[-1][0, 0] = masks[-1][-1, -1] = True
    rles = [encode_mask(m) for m in masks]
    rl = RunLengths(rles, H, W)
    full = np.stack(masks)
    assert rl.areas().tolist() == full.reshape(len(masks), -1).sum(1).tolist()
    rows, cols = rng.integers(0, H, 20), rng.integers(0, W, 25)
    np.testing.assert_array_equal(rl.sample(rows, cols), full[:, rows][:, :, cols])
    np.testing.assert_array_equal(rl.sample(rows, cols, [4, 1]), full[[4, 1]][:, rows][:, :, cols])
    for i in range(len(masks)):
        np.testing.assert_array_equal(rl.decode_window(i, 7, 30), full[i][:, 7:30])
    with pytest.raises(ValueError, match="size"):
        RunLengths([rles[2]], H + 1, W)
    with pytest.raises(ValueError):
        RunLengths([{"size": [H, W], "counts": rles[2]["counts"][:-3]}], H, W)


# ------------------------------------------------------------------------------------------------ images
@pytest.mark.parametrize("mode", ["grey_png", "rgba_png", "png16", "grey16", "grey_jpg", "rgb_jpg"])
def test_decode_image_any_mode_to_rgb8(mode):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    if mode == "grey_png":
        data = _png(base[..., 0])
    elif mode == "rgba_png":
        data = cv2.imencode(".png", np.dstack([base, np.full((20, 30), 128, np.uint8)]))[1].tobytes()
    elif mode == "png16":
        data = cv2.imencode(".png", base.astype(np.uint16) * 257)[1].tobytes()
    elif mode == "grey16":
        data = cv2.imencode(".png", base[..., 0].astype(np.uint16) * 257)[1].tobytes()
    elif mode == "grey_jpg":
        data = cv2.imencode(".jpg", base[..., 0])[1].tobytes()
    else:
        data = _jpg(base)
    img = decode_image(data)
    assert img.dtype == np.uint8 and img.shape == (20, 30, 3)
    if mode in ("png16", "rgba_png"):  # cv2 wrote `base` as B, G, R(, A): RGB back is base reversed
        np.testing.assert_array_equal(img, base[..., ::-1])
    if mode in ("grey_png", "grey16"):
        assert (img[..., 0] == img[..., 1]).all() and (img[..., 0] == base[..., 0]).all()
    with pytest.raises(ValueError):
        decode_image(data[: len(data) // 3] if "jpg" not in mode else b"not an image")


def test_pad_then_normalize_is_sam_preprocess():
    from segment_anything.modeling import Sam

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (50, 64, 3), dtype=np.uint8)
    fake = types.SimpleNamespace(pixel_mean=torch.tensor(PIXEL_MEAN).view(-1, 1, 1),
                                 pixel_std=torch.tensor(PIXEL_STD).view(-1, 1, 1),
                                 image_encoder=types.SimpleNamespace(img_size=64))
    ref = Sam.preprocess(fake, torch.from_numpy(img).permute(2, 0, 1).float())
    assert torch.equal(normalize_images(pad_image(img, 64), torch.tensor([50, 64])), ref)


def test_loader_batches_are_uint8_and_the_module_normalises_them_as_the_old_loader(colour_shards):
    """Issue 16: the batch carries uint8 pixels (4x less /dev/shm than float32) and bool masks;
    ``LiteSAMTaskBase.on_after_batch_transfer`` turns the image into exactly the float32 tensor the loader used to
    make (a float32 lookup table of ``(v - mean) / std`` into a zeroed slot), padding +0.0 included."""
    from litesam_pl.modules import AutoPPNModule, BackboneBoxModule, LiteSAMModule
    from litesam_pl.modules.base import LiteSAMTaskBase

    dm = SA1BDataModule(train_shards=str(colour_shards), batch_size=3, num_workers=0, img_size=S, max_masks=4,
                        epoch_samples=6, scale_jitter=(0.5, 1.0), shuffle_buffer=0, pin_memory=False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["masks"].dtype == torch.bool
    for cls in (AutoPPNModule, BackboneBoxModule, LiteSAMModule):  # every stage inherits the one hook
        assert cls.on_after_batch_transfer is LiteSAMTaskBase.on_after_batch_transfer
    hook = LiteSAMTaskBase.on_after_batch_transfer  # it reads nothing of the module (no model to build here)
    out = hook(None, batch, 0)
    assert batch["image"].dtype == torch.uint8  # the loader's batch is not modified
    assert out["image"].dtype == torch.float32 and out["masks"] is batch["masks"]
    lut = ((np.arange(256, dtype=np.float32)[None, :] - MEAN32[:, None]) / STD32[:, None]).astype(np.float32)
    for b in range(3):
        h, w = batch["input_size"][b].tolist()
        old = np.zeros((3, S, S), np.float32)
        pix = np.ascontiguousarray(batch["image"][b, :, :h, :w].permute(1, 2, 0).numpy())
        for c, chan in enumerate(cv2.split(pix)):
            old[c, :h, :w] = cv2.LUT(chan, lut[c])
        assert (out["image"][b].view(torch.int32) == torch.from_numpy(old).view(torch.int32)).all()
    assert hook(None, out, 0)["image"] is out["image"]  # float images pass unchanged


def test_batch_shm_bytes_covers_a_real_batch(colour_shards):
    from litesam_pl.data.collate import batch_shm_bytes

    dm = SA1BDataModule(train_shards=str(colour_shards), batch_size=2, num_workers=0, img_size=S, max_masks=4,
                        epoch_samples=2, shuffle_buffer=0, pin_memory=False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    tensors = [v for v in batch.values() if torch.is_tensor(v)] + list(batch["all_boxes"])
    pages = sum(-(-t.numel() * t.element_size() // 4096) for t in tensors)
    assert batch_shm_bytes(2, S, 4) == pages * 4096
    assert batch_shm_bytes(2, 640, 16) / 2 == pytest.approx(3 * 640**2 + 16 * 640**2 + 73 * 80**2, rel=0.01)


# ------------------------------------------------------------------------------------------------ samples
@pytest.mark.parametrize("train", [False, True])
def test_resize_pad_keeps_masks_aligned(colour_shards, train):
    proc = SampleProcessor(img_size=S, max_masks=4, train=train, hflip_prob=1.0 if train else 0.0,
                           scale_jitter=(0.6, 0.9) if train else (1.0, 1.0))
    rng = np.random.default_rng(0)
    seen = 0
    with tarfile.open(next(colour_shards.glob("*.tar"))) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}
    for key in sorted({n.split(".")[0] for n in files}):
        raw = {"__key__": key, "png": files[f"{key}.png"], "json": files[f"{key}.json"]}
        s = proc(raw, rng)
        red = _denorm(s["image"])[..., 0] > 128
        ih, iw = s["input_size"].tolist()
        H, W = s["original_size"].tolist()
        assert max(ih, iw) == (S if not train else max(ih, iw)) and max(ih, iw) <= S
        if train:
            assert max(ih, iw) < S  # scale jitter shrank the image
        for k in range(4):
            if not s["valid"][k]:
                continue
            m = s["masks"][k].numpy()
            assert red[m].mean() > 0.93, "mask not aligned with the image"
            x0, y0, x1, y1 = s["gt_boxes"][k].tolist()
            ys, xs = np.nonzero(m)
            assert abs(xs.min() - x0) <= 1.5 and abs(xs.max() + 1 - x1) <= 1.5
            assert abs(ys.min() - y0) <= 1.5 and abs(ys.max() + 1 - y1) <= 1.5
            seen += 1
        # AutoPPN cells owned by a mask sit on red pixels of the image at their centres
        owned = (s["ppn_box_weight"] > 0).any(0).numpy()
        ci = np.argwhere(owned)
        assert len(ci) and red[ci[:, 0] * 8 + 4, ci[:, 1] * 8 + 4].mean() > 0.9
        assert s["ppn_ignore"][ci[:, 0], ci[:, 1]].sum() == 0
        if not train:  # validation prompts: exact boxes, points at the most interior pixel
            assert torch.equal(s["boxes"], s["gt_boxes"])
    assert seen >= 6


def test_validation_prompts_deterministic(colour_shards):
    proc = SampleProcessor(img_size=S, max_masks=3, train=False)
    with tarfile.open(next(colour_shards.glob("*.tar"))) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}
    raw = {"__key__": "sa_0", "png": files["sa_0.png"], "json": files["sa_0.json"]}
    a = proc(raw, np.random.default_rng(1))
    b = proc(raw, np.random.default_rng(2))
    for k in ("masks", "boxes", "points", "ppn_heatmap"):
        assert torch.equal(a[k], b[k])


# ------------------------------------------------------------------------------------------------ data module
def test_val_loader_two_workers_reads_every_sample_once(synthetic_sa1b):
    dm = SA1BDataModule(train_shards=str(synthetic_sa1b), val_shards=str(synthetic_sa1b), batch_size=5,
                        num_workers=2, img_size=S, max_masks=4)
    dm.setup("validate")
    expected = {f"sa_{i + 1}" for i in range(12)}
    for _ in range(2):  # two epochs
        keys = []
        for batch in dm.val_dataloader():
            _check_contract(batch, len(batch["key"]), 4)
            keys += batch["key"]
        assert Counter(keys) == Counter(expected)
    assert dm.num_skipped == 0


def test_train_loader_contract_and_epoch_length(synthetic_sa1b):
    dm = SA1BDataModule(train_shards=f"{synthetic_sa1b}/sa_{{000000..000002}}.tar", batch_size=2, num_workers=2,
                        img_size=S, max_masks=6, epoch_samples=10, scale_jitter=(0.5, 1.0))
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == 5
    batches = list(loader)
    assert len(batches) == 5
    for b in batches:
        _check_contract(b, 2, 6, jitter=True)
        assert b["valid"].any()
    # without epoch_samples: one epoch = the shards' sample count (from the tar headers)
    dm2 = SA1BDataModule(train_shards=str(synthetic_sa1b), batch_size=4, num_workers=0, img_size=S)
    dm2.setup("fit")
    assert dm2.train_batches_per_epoch == 3


def test_ablation_target_switches(synthetic_sa1b):
    dm = SA1BDataModule(val_shards=str(synthetic_sa1b), batch_size=3, num_workers=0, img_size=S, max_masks=2,
                        target_mode="gaussian", num_groups=1)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    _check_contract(batch, 3, 2, G=1)
    # gaussian: one box target per mask, at most
    assert (batch["ppn_box_weight"].sum((1, 2, 3)) <= torch.tensor([len(b) for b in batch["all_boxes"]])).all()


def test_bad_samples_are_skipped_and_counted(tmp_path, caplog):
    rng = np.random.default_rng(0)
    good = []
    for i in range(3):
        img, masks = _colour_scene(rng, (64, 80), n=3)
        good.append((f"sa_{i}", _jpg(img), _record(f"sa_{i}", masks, (64, 80))))
    img, masks = _colour_scene(rng, (64, 80), n=3)
    jpg, js = _jpg(img), _record("x", masks, (64, 80))
    wrong_size = json.loads(js)
    wrong_size["annotations"][1]["segmentation"]["size"] = [32, 80]
    members = [
        ("sa_0.jpg", good[0][1]), ("sa_0.json", good[0][2]),
        ("sa_10.jpg", jpg[: len(jpg) // 3]), ("sa_10.json", js),  # truncated jpg
        ("sa_11.jpg", jpg), ("sa_11.json", b'{"image": {"width": 80, '),  # bad json
        ("sa_1.jpg", good[1][1]), ("sa_1.json", good[1][2]),
        ("sa_12.jpg", jpg), ("sa_12.json", json.dumps(wrong_size).encode()),  # RLE of the wrong size
        ("sa_13.jpg", jpg),  # json member missing
        ("sa_2.jpg", good[2][1]), ("sa_2.json", good[2][2]),
    ]
    _write_tar(tmp_path / "sa_000000.tar", members)
    dm = SA1BDataModule(val_shards=str(tmp_path), batch_size=1, num_workers=0, img_size=S, max_masks=2)
    dm.setup("validate")
    with caplog.at_level("WARNING"):
        batches = list(dm.val_dataloader())
    assert [b["key"][0] for b in batches] == ["sa_0", "sa_1", "sa_2"]
    assert [int(b["num_skipped"][0]) for b in batches] == [0, 2, 4]
    assert dm.num_skipped == 4
    assert sum("skipped a bad sample" in r.getMessage() for r in caplog.records) == 4


def test_truncated_shard_is_skipped_not_fatal(tmp_path, synthetic_sa1b):
    shard = sorted(synthetic_sa1b.glob("*.tar"))[0]
    data = shard.read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: int(len(data) * 0.6)])
    dm = SA1BDataModule(val_shards=[str(tmp_path / "cut.tar"), str(sorted(synthetic_sa1b.glob("*.tar"))[1])],
                        batch_size=2, num_workers=2, img_size=S, max_masks=2)
    dm.setup("validate")
    keys = [k for b in dm.val_dataloader() for k in b["key"]]
    assert 4 <= len(keys) < 8 and len(set(keys)) == len(keys)
    assert dm.num_skipped >= 1


def test_start_up_errors(tmp_path, synthetic_sa1b):
    with pytest.raises(ValueError, match="empty"):
        SA1BDataModule(train_shards=[]).setup("fit")
    with pytest.raises(ValueError, match="train_shards"):
        SA1BDataModule().setup("fit")
    with pytest.raises(FileNotFoundError):
        SA1BDataModule(train_shards=str(tmp_path / "nope" / "sa_{000..003}.tar")).setup("fit")
    with pytest.raises(FileNotFoundError):
        SA1BDataModule(train_shards=str(tmp_path / "missing_*.tar")).setup("fit")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match="no .tar"):
        SA1BDataModule(train_shards=str(tmp_path / "empty_dir")).setup("fit")
    with pytest.raises(FileNotFoundError):
        SA1BDataModule(train_shards=str(synthetic_sa1b), val_shards=str(tmp_path / "v.tar")).setup("fit")
    with pytest.raises(ValueError, match="val_shards"):
        SA1BDataModule(train_shards=str(synthetic_sa1b)).setup("validate")
    with pytest.raises(ValueError):
        SA1BDataModule(img_size=130, ppn_stride=8)
    with pytest.raises(ValueError):
        SA1BDataModule(scale_jitter=(0.5, 1.5))
    with pytest.raises(ValueError):
        SA1BDataModule(target_mode="centernet")


def test_url_expansion(synthetic_sa1b):
    tars = sorted(str(p) for p in synthetic_sa1b.glob("*.tar"))
    assert expand_urls(str(synthetic_sa1b)) == tars
    assert expand_urls(f"{synthetic_sa1b}/sa_{{000000..000002}}.tar") == tars
    assert expand_urls(f"{synthetic_sa1b}/sa_*.tar") == tars
    assert expand_urls(f"{tars[0]}::{tars[2]}") == [tars[0], tars[2]]
    assert expand_urls(["pipe:cat a.tar", "s3://bucket/sa_{0..1}.tar"]) == [
        "pipe:cat a.tar", "s3://bucket/sa_0.tar", "s3://bucket/sa_1.tar"]
    assert count_samples(tars) == 12


def test_pipe_url_streams(synthetic_sa1b):
    tar = sorted(synthetic_sa1b.glob("*.tar"))[0]
    dm = SA1BDataModule(val_shards=f"pipe:cat {tar}", batch_size=4, num_workers=0, img_size=S, max_masks=2)
    dm.setup("validate")
    keys = [k for b in dm.val_dataloader() for k in b["key"]]
    assert sorted(keys) == ["sa_1", "sa_2", "sa_3", "sa_4"]


def test_lightning_fit_and_validate_loop(synthetic_sa1b):
    import lightning.pytorch as pl

    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.train_keys: list[str] = []
            self.val_keys: list[str] = []

        def training_step(self, batch, batch_idx):
            _check_contract(batch, len(batch["key"]), 3)
            self.train_keys += batch["key"]
            return (self.w * batch["ppn_heatmap"].mean()).sum() + self.w.sum() ** 2

        def validation_step(self, batch, batch_idx):
            self.val_keys += batch["key"]

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = SA1BDataModule(train_shards=str(synthetic_sa1b), val_shards=str(synthetic_sa1b), batch_size=4,
                        num_workers=1, img_size=S, max_masks=3, epoch_samples=8)
    probe = Probe()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(probe, datamodule=dm)
    assert len(probe.train_keys) == 2 * 8  # 2 epochs x 2 batches of 4
    assert Counter(probe.val_keys) == Counter({f"sa_{i + 1}": 2 for i in range(12)})  # every sample, once per epoch
    assert dm.num_skipped == 0


def test_constructor_is_cli_friendly(synthetic_sa1b):
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(SA1BDataModule, "data")
    cfg = parser.parse_args(["--data.train_shards", str(synthetic_sa1b), "--data.img_size", "128",
                             "--data.scale_jitter", "[0.5, 1.0]", "--data.target_mode", "gaussian"])
    init = parser.instantiate_classes(cfg)
    dm = init.data
    assert isinstance(dm, SA1BDataModule) and dm.img_size == 128
    assert dm.train_processor.scale_jitter == (0.5, 1.0) and dm.train_processor.target_mode == "gaussian"


def test_two_ranks_split_validation_and_resampled_training(synthetic_sa1b, monkeypatch):
    keys_per_rank = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        dm = SA1BDataModule(train_shards=str(synthetic_sa1b), val_shards=str(synthetic_sa1b), batch_size=2,
                            num_workers=2, img_size=S, max_masks=2, resampled=True, epoch_samples=8)
        dm.setup("fit")
        keys_per_rank.append([k for b in dm.val_dataloader() for k in b["key"]])
        train = list(dm.train_dataloader())  # resampled shards: still exactly the epoch length
        assert len(train) == 8 // (2 * 1)  # world size comes from the trainer (none here): 1
    a, b = keys_per_rank
    assert not set(a) & set(b) and len(a) + len(b) == 12  # ranks split the shards, every sample once


def test_one_val_shard_split_by_sample_over_ranks_and_workers(synthetic_sa1b, monkeypatch):
    """Issue 16: one validation shard for 2 ranks used to leave rank 1 with nothing (and the job deadlocked in
    validation). With fewer shards than ranks x workers every rank reads the shard and keeps its share of the
    samples: each sample once over all ranks and workers, and every rank validates."""
    shard = sorted(synthetic_sa1b.glob("*.tar"))[0]  # 4 samples
    everything = None
    for workers in (0, 2):
        per_rank = []
        for rank in (0, 1):
            monkeypatch.setenv("RANK", str(rank))
            monkeypatch.setenv("WORLD_SIZE", "2")
            dm = SA1BDataModule(val_shards=str(shard), batch_size=1, num_workers=workers, img_size=S, max_masks=2)
            dm.setup("validate")
            per_rank.append([k for b in dm.val_dataloader() for k in b["key"]])
        a, b = per_rank
        assert len(a) == len(b) == 2, per_rank  # balanced: every rank has batches
        assert not set(a) & set(b)
        everything = everything or set(a) | set(b)
        assert set(a) | set(b) == everything and len(everything) == 4
    # the split itself: fewer shards than readers -> every reader opens every shard, 1 sample in `readers`;
    # at least as many -> shards by rank, then by worker, every sample of them kept (the former split)
    ds = dm.val_dataloader().dataset
    ds.urls = ["s0", "s1", "s2"]
    assert ds.eval_split(rank=1, world=2, worker=0, nworkers=2) == (["s0", "s1", "s2"], 4, 2)
    assert ds.eval_split(rank=1, world=2, worker=0, nworkers=1) == (["s1"], 1, 0)
    recs = [{"__url__": u, "__key__": f"{u}/{j}"} for u in ds.urls for j in range(3)]
    kept = [[r["__key__"] for r in ds._keep(recs, 4, reader)] for reader in range(4)]
    assert sorted(sum(kept, [])) == sorted(r["__key__"] for r in recs) and all(len(k) >= 2 for k in kept)
    # a shard missing on one reader does not shift the others' share of the next shard
    assert [r["__key__"] for r in ds._keep(recs[3:], 4, 1)] == [k for k in kept[1] if not k.startswith("s0")]


def test_fsspec_urls_stream(synthetic_sa1b):
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    for p in sorted(synthetic_sa1b.glob("*.tar"))[:2]:
        fs.pipe(f"/litesam_test/{p.name}", p.read_bytes())
    dm = SA1BDataModule(val_shards="memory://litesam_test/sa_*.tar", batch_size=4, num_workers=0, img_size=S,
                        max_masks=2)
    dm.setup("validate")
    assert [u.replace(":///", "://") for u in dm.val_urls] == [
        "memory://litesam_test/sa_000000.tar", "memory://litesam_test/sa_000001.tar"]
    keys = [k for b in dm.val_dataloader() for k in b["key"]]
    assert sorted(keys) == sorted(f"sa_{i + 1}" for i in range(8))
    with pytest.raises(FileNotFoundError):
        SA1BDataModule(val_shards="memory://litesam_test/missing_{0..1}.tar").setup("validate")


def test_unreadable_shards_raise_instead_of_hanging(tmp_path):
    (tmp_path / "garbage.tar").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    dm = SA1BDataModule(train_shards=str(tmp_path / "garbage.tar"), val_shards=str(tmp_path / "garbage.tar"),
                        batch_size=2, num_workers=0, img_size=S, epoch_samples=4)
    dm.setup("fit")
    with pytest.raises(RuntimeError, match="no readable sample"):
        list(dm.val_dataloader())
    with pytest.raises(RuntimeError, match="no readable sample"):
        list(dm.train_dataloader())
    assert dm.num_skipped >= 2


# ------------------------------------------------------------------------------------------------ loader costs
class _CountingRaw(io.RawIOBase):
    """An unbuffered file that counts the bytes read from disk."""

    def __init__(self, path, counter: list):
        self._f = io.FileIO(path, "rb")
        self._counter = counter

    def readable(self):
        return True

    def seekable(self):
        return True

    def readinto(self, b):
        n = self._f.readinto(b)
        self._counter[0] += n or 0
        return n

    def seek(self, pos, whence=0):
        return self._f.seek(pos, whence)

    def tell(self):
        return self._f.tell()

    def close(self):
        self._f.close()
        super().close()


def test_count_samples_reads_headers_only(tmp_path, monkeypatch):
    import gzip

    import litesam_pl.data.shards as stream

    members = []
    for i in range(3):
        members += [(f"sa_{i}.jpg", b"\xff" * (1 << 20)), (f"sa_{i}.json", b"{}")]
    shard = _write_tar(tmp_path / "big.tar", members)
    (tmp_path / "big.tar.gz").write_bytes(gzip.compress(shard.read_bytes(), compresslevel=1))
    read = [0]

    def counting_open(path, mode="r", *args, **kwargs):
        assert mode == "rb", mode
        return io.BufferedReader(_CountingRaw(path, read))

    monkeypatch.setattr(stream, "open", counting_open, raising=False)
    assert count_samples([str(shard)]) == 3
    size = shard.stat().st_size
    assert 0 < read[0] < size / 20, (read[0], size)  # headers (+ read-ahead), not the 3 MB of member data
    # compressed tars cannot be seeked cheaply: they are streamed, and still counted right
    assert count_samples([str(tmp_path / "big.tar.gz")]) == 3


def test_workers_use_one_opencv_thread(colour_shards):
    from torch.utils.data import IterableDataset

    class Report(IterableDataset):
        def set_epoch(self, epoch):
            pass

        def __iter__(self):
            yield cv2.getNumThreads()

    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(4)
        dm = SA1BDataModule(val_shards=str(colour_shards), batch_size=2, num_workers=1, img_size=S, max_masks=2)
        dm.setup("validate")
        assert list(dm._loader(Report(), None)) == [1]  # inside a real (forked) worker
        assert list(dm._loader(Report(), None)) == [1]  # a second loader forks again without hanging
        cv2.setNumThreads(4)
        inline = SA1BDataModule(val_shards=str(colour_shards), batch_size=2, num_workers=0, img_size=S, max_masks=2)
        inline.setup("validate")
        assert list(inline._loader(Report(), None)) == [4]  # no workers: OpenCV keeps its threads
    finally:
        cv2.setNumThreads(before)


def test_epoch_coverage_arithmetic():
    """Issue 16 #7: 2,000 equal shards over 768 readers: 464 own 3 shards, 304 own 2 (the issue's example)."""
    from litesam_pl.data.sa1b_stream import epoch_coverage

    cov = epoch_coverage([1000] * 2000, world=128, workers=6, batches_per_epoch=2_000_000 // (2 * 128),
                         batch_size=2)
    assert cov["readers"] == 768 and cov["shards_per_reader"] == (2, 3)
    # each reader must deliver ~2,604 samples: 2-shard readers repeat ~604 each, 3-shard readers leave ~396 unread
    assert cov["repeated"] == pytest.approx(304 * 604, rel=0.01) and cov["unread"] == pytest.approx(464 * 396, rel=0.01)
    even = epoch_coverage([100] * 12, world=2, workers=3, batches_per_epoch=300, batch_size=2)
    assert even["repeated"] == even["unread"] == 0


def test_uneven_shards_are_reported_and_an_epoch_reads_what_the_report_says(synthetic_sa1b, caplog):
    """3 shards of 4 samples over 2 workers: worker 0 owns 8 samples and reads 6, worker 1 owns 4 and reads 6
    (2 from a second pass): the data module says so at set-up, and the epoch reads 12 samples, at least 8 distinct."""
    import logging

    dm = SA1BDataModule(train_shards=str(synthetic_sa1b), batch_size=2, num_workers=2, img_size=64, max_masks=2,
                        shuffle_buffer=0, pin_memory=False)
    with caplog.at_level(logging.WARNING, logger="litesam_pl.data.datamodule"):
        dm.setup("fit")
    assert dm.epoch_coverage["repeated"] == 2 and dm.epoch_coverage["unread"] == 2
    assert any("second, reshuffled pass" in r.getMessage() and "~2 samples" in r.getMessage() for r in caplog.records)
    keys = [k for b in dm.train_dataloader() for k in b["key"]]
    assert len(keys) == 12 and len(set(keys)) >= 8


def test_shared_memory_need_is_computed_and_a_small_dev_shm_is_named(tmp_path, monkeypatch, caplog):
    """Issue 16 #9: 8.25 MB per sample at 640 with 16 masks (uint8 image 1.2 MB, bool masks 6.6 MB, AutoPPN
    targets 0.47 MB; 11.47 MB with float32 images); a 64 MB /dev/shm (Docker's default) is named with the fix, a
    large one passes silently."""
    import logging
    import shutil
    from collections import namedtuple

    dm = SA1BDataModule(train_shards="unused", batch_size=2, num_workers=6, img_size=640, max_masks=16,
                        prefetch_factor=2)
    assert dm.shm_bytes_needed() / 12 / 2 == pytest.approx(8.25e6, rel=0.01)  # per sample
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(64 * 2**20, 0, 64 * 2**20))
    with caplog.at_level(logging.WARNING, logger="litesam_pl.data.datamodule"):
        msg = dm.check_shm()
    assert msg and "64 MB free" in msg and "--ipc=host" in msg and "--shm-size=" in msg and "Bus error" in msg
    assert any("--ipc=host" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(2**40, 0, 2**40))
    assert dm.check_shm() is None
    assert SA1BDataModule(train_shards="unused", num_workers=0).shm_bytes_needed() == 0
