"""The fast per-sample path (issue 17, "the loader") gives the samples of a slow, obvious reference.

``SampleProcessor`` decodes RLEs only where needed (grid points inside each mask's box, column windows of the K
chosen masks), writes the image as uint8 (normalised later, on the device: ``transforms.normalize_images``) and
collates with numpy. The reference below decodes every mask in full with pycocotools, resamples it by nearest
neighbour, and normalises with torch arithmetic as ``Sam.preprocess`` does; the sample's uint8 image, normalised,
must equal it bit for bit. On fixed SA-1B-like samples (identity geometry as for shards prepared at 640, down- and
up-scaling, flips, scale jitter, validation mode, both target modes) every output must be identical. The one
tolerance: AutoPPN heatmaps come from ``cv2.distanceTransform(DIST_MASK_PRECISE)``, which is not bit-reproducible
from call to call (last-bit differences between two runs of the same code), so they match to 1e-6. Validation
point prompts (the same transform's maximum) must match exactly: ``interior_points`` resolves near-ties to the first
pixel in raster order, so they are the same on every call (they were not before: a plain argmax picked either of
two pixels at the same distance).
"""
from __future__ import annotations

import json
import zlib

import cv2
import numpy as np
import pytest
import torch

from data_prep.synthetic import dense_scene
from litesam_pl.data.collate import collate_samples, zeros_batch_tensor
from litesam_pl.data.prompts import choose_masks, interior_points, noisy_boxes, random_points
from litesam_pl.data.rle import decode_rle, encode_mask, rle_to_bbox
from litesam_pl.data.rle_sample import RunLengths
from litesam_pl.data.sa1b_stream import SampleProcessor
from litesam_pl.data.targets import grid_valid, ppn_targets, size_groups
from litesam_pl.data.transforms import (PIXEL_MEAN, PIXEL_STD, Geometry, decode_image, normalize_batch,
                                        normalize_images, pad_image, reduce_factor)

MEAN32, STD32 = np.asarray(PIXEL_MEAN, np.float32), np.asarray(PIXEL_STD, np.float32)  # as the loader computes


# ------------------------------------------------------------------------------------------------ fixed samples
def _raw(key: str, hw: tuple[int, int], n_masks: int, seed: int) -> dict:
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    img, masks = dense_scene(rng, hw, n_masks)
    anns = []
    for j, m in enumerate(masks):
        rle = encode_mask(m)
        anns.append({"id": j, "segmentation": rle, "bbox": rle_to_bbox(rle), "area": int(m.sum())})
    meta = {"image": {"image_id": 1, "height": hw[0], "width": hw[1], "file_name": f"{key}.jpg"},
            "annotations": anns}
    jpg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    return {"__key__": key, "jpg": jpg, "json": json.dumps(meta).encode()}


@pytest.fixture(scope="module")
def raws() -> list[dict]:
    # 480x640: a shard prepared at 640 (identity geometry at S=640); 150x200 / 70x90 are scaled at S=128
    return ([_raw(f"p640_{i}", (480, 640), 30, 0) for i in range(3)]
            + [_raw(f"small_{i}", (150, 200), 25, 1) for i in range(3)]
            + [_raw(f"tiny_{i}", (70, 90), 12, 2) for i in range(2)])


# ------------------------------------------------------------------------------------------------ the reference
def _reference(proc: SampleProcessor, raw: dict, rng: np.random.Generator) -> dict:
    """The sample by full decoding (pycocotools) and nearest-neighbour resampling; same random draws, same order."""
    key = raw["__key__"]
    meta = json.loads(raw["json"])
    segs = [a["segmentation"] for a in meta["annotations"]]
    H, W = int(meta["image"]["height"]), int(meta["image"]["width"])
    if not proc.train:
        rng = np.random.default_rng([proc.seed, zlib.crc32(key.encode())])
        scale, hflip = 1.0, False
    else:
        scale = float(rng.uniform(*proc.scale_jitter)) if proc.scale_jitter[0] < 1.0 else 1.0
        hflip = bool(rng.random() < proc.hflip_prob) if proc.hflip_prob > 0 else False
    geom = Geometry.make((H, W), proc.img_size, scale, hflip)
    img = geom.image(decode_image(raw["jpg"], reduce=reduce_factor(H, W, max(geom.input_hw))))
    full = np.stack([decode_rle(s) for s in segs])  # [N, H, W]
    xywh = np.array([rle_to_bbox(s) for s in segs], np.float64)
    areas = full.reshape(len(full), -1).sum(1)
    keep = np.flatnonzero(areas > 0)
    full, xywh, areas = full[keep], xywh[keep], areas[keep]
    boxes_in = geom.boxes(xywh)
    groups = size_groups(xywh[:, [3, 2]], (H, W), proc.num_groups)
    s, S, K = proc.ppn_stride, proc.img_size, proc.max_masks
    p = S // s
    rv, cv = grid_valid(geom.input_hw, S, s)
    grid = np.zeros((len(full), p, p), bool)
    grid[:, :rv, :cv] = full[:, geom.src_rows((np.arange(rv) + 0.5) * s)][:, :, geom.src_cols((np.arange(cv) + 0.5) * s)]
    tg = ppn_targets(grid, boxes_in, areas, groups, geom.input_hw, S, s, proc.num_groups, proc.target_mode,
                     proc.ppn_background)
    h, w = geom.input_hw
    resized = full[:, geom.pixel_rows()][:, :, geom.pixel_cols()]  # every mask at input resolution
    masks = np.zeros((K, S, S), bool)
    chosen: list[int] = []
    for j in choose_masks(len(full), len(full), rng):
        if len(chosen) == K:
            break
        if resized[j].any():  # masks that vanish when shrunk are skipped
            masks[len(chosen), :h, :w] = resized[j]
            chosen.append(int(j))
    n = len(chosen)
    gt_boxes, boxes, points = np.zeros((K, 4), np.float32), np.zeros((K, 4), np.float32), np.zeros((K, 1, 2), np.float32)
    if n:
        gt_boxes[:n] = boxes_in[chosen]
        if proc.train:
            boxes[:n] = noisy_boxes(gt_boxes[:n], geom.input_hw, rng, proc.box_noise, proc.box_noise_max)
            points[:n] = random_points(masks[:n], gt_boxes[:n], rng)
        else:
            boxes[:n] = noisy_boxes(gt_boxes[:n], geom.input_hw, None)
            points[:n] = interior_points(masks[:n], gt_boxes[:n])
    image = torch.zeros(3, S, S)
    mean, std = torch.tensor(PIXEL_MEAN).view(3, 1, 1), torch.tensor(PIXEL_STD).view(3, 1, 1)
    image[:, :h, :w] = (torch.from_numpy(img).permute(2, 0, 1).float() - mean) / std  # Sam.preprocess
    valid = np.zeros(K, bool)
    valid[:n] = True
    return {"image": image, "masks": torch.from_numpy(masks), "boxes": torch.from_numpy(boxes),
            "gt_boxes": torch.from_numpy(gt_boxes), "points": torch.from_numpy(points),
            "point_labels": torch.ones(K, 1, dtype=torch.int64), "valid": torch.from_numpy(valid),
            "ppn_heatmap": torch.from_numpy(tg["heatmap"]), "ppn_boxes": torch.from_numpy(tg["boxes"]),
            "ppn_box_weight": torch.from_numpy(tg["box_weight"]), "ppn_ignore": torch.from_numpy(tg["ignore"]),
            "all_boxes": torch.from_numpy(boxes_in), "original_size": torch.tensor([H, W]),
            "input_size": torch.tensor(geom.input_hw), "key": key}


def _assert_same(got: dict, ref: dict) -> None:
    assert set(got) == set(ref)
    for k, r in ref.items():
        g = got[k]
        if k == "key":
            assert g == r
            continue
        if k == "image":  # uint8 in the batch; normalised (on the device) it is the reference's float32, bit for bit
            assert g.dtype == torch.uint8 and g.shape == r.shape
            g = normalize_images(g, got["input_size"])
        assert g.dtype == r.dtype and g.shape == r.shape, k
        if k == "ppn_heatmap":
            torch.testing.assert_close(g, r, rtol=0, atol=1e-6)
        else:
            assert torch.equal(g, r), k


CONFIGS = {
    "train_640": dict(img_size=640, max_masks=16, hflip_prob=0.0),
    "train_640_flip": dict(img_size=640, max_masks=16, hflip_prob=1.0),
    "train_flip_jitter": dict(img_size=128, max_masks=8, hflip_prob=1.0, scale_jitter=(0.4, 1.0)),
    "train_gaussian_1group": dict(img_size=128, max_masks=4, target_mode="gaussian", num_groups=1, hflip_prob=0.5),
    "train_ignore_bg": dict(img_size=256, max_masks=32, ppn_background="ignore"),
    "val": dict(img_size=128, max_masks=64, train=False),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_samples_equal_the_full_decode_reference(raws, name):
    kw = CONFIGS[name]
    proc = SampleProcessor(**kw)
    for i, raw in enumerate(raws):
        if kw["img_size"] == 640 and not raw["__key__"].startswith("p640"):
            continue
        if kw["img_size"] < 640 and raw["__key__"].startswith("p640") and name != "train_ignore_bg":
            continue
        seed = [7, i]
        got = proc(raw, np.random.default_rng(seed))
        _assert_same(got, _reference(proc, raw, np.random.default_rng(seed)))
        # the same sample written into dirty preallocated slots (a reused batch slot after a failed sample)
        S, K = proc.img_size, proc.max_masks
        slots = {"image": torch.full((3, S, S), 7, dtype=torch.uint8), "masks": torch.ones(K, S, S, dtype=torch.bool)}
        again = proc(raw, np.random.default_rng(seed), slots, out_zeroed=False)
        assert again["image"].data_ptr() == slots["image"].data_ptr()
        assert torch.equal(again["image"], got["image"]) and torch.equal(again["masks"], got["masks"])


def test_phase_times_cover_the_sample(raws):
    proc = SampleProcessor(img_size=640, max_masks=16, phase_times={})
    proc(raws[0], np.random.default_rng(0))
    assert set(proc.phase_times) == {"parse", "decode", "resize", "rle", "grid", "targets", "masks", "prompts",
                                     "pad"}
    assert all(v >= 0 for v in proc.phase_times.values())
    assert "phase_times" not in repr(proc)


# ------------------------------------------------------------------------------------------------ the pieces
def test_grid_sampling_inside_boxes_matches_full_decode():
    rng = np.random.default_rng(3)
    H, W = 61, 47
    masks = [np.zeros((H, W), bool) for _ in range(7)]
    masks[0][5:20, 3:9] = True
    masks[1][0, 0] = masks[1][-1, -1] = True  # box = the whole image
    masks[2][30:, 40:] = rng.random((H - 30, W - 40)) < 0.5
    masks[3][:] = True
    masks[4][10:11, 0:W] = True
    masks[6] = rng.random((H, W)) < 0.1  # 5 stays empty
    rl = RunLengths([encode_mask(m) for m in masks], H, W)
    full = np.stack(masks)
    for _ in range(20):
        rows = rng.integers(0, H, int(rng.integers(1, 40)))  # unsorted, with repeats
        cols = rng.integers(0, W, int(rng.integers(1, 40)))
        idx = rng.integers(0, len(masks), int(rng.integers(1, 10)))
        ref = full[idx][:, rows][:, :, cols]
        np.testing.assert_array_equal(rl.sample(rows, cols, idx), ref)
        np.testing.assert_array_equal(rl.sample(rows, cols, idx, boxes=rl.boxes()), ref)
    np.testing.assert_array_equal(rl.sample(np.arange(H), np.arange(W)), full)


# the loader's former normalisation (issue 17): a per-channel float32 lookup table, cv2.LUT into the zeroed
# float32 batch slot; the on-device normalisation must give the model exactly these values
_OLD_LUT = ((np.arange(256, dtype=np.float32)[None, :] - MEAN32[:, None]) / STD32[:, None]).astype(np.float32)


def _old_normalize_pad(img: np.ndarray, S: int) -> torch.Tensor:
    h, w = img.shape[:2]
    out = np.zeros((3, S, S), np.float32)
    for c, chan in enumerate(cv2.split(img)):
        out[c, :h, :w] = cv2.LUT(chan, _OLD_LUT[c])
    return torch.from_numpy(out)


@pytest.mark.parametrize("hw", [(5, 7), (480, 640), (640, 427)])
def test_pad_then_normalize_equals_the_old_lookup_and_the_arithmetic(hw):
    img = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    img[0, 0] = 0  # a real black pixel (not padding) normalises to -mean/std
    S = 640
    ref = torch.zeros(3, S, S)
    ref[:, :hw[0], :hw[1]] = (torch.from_numpy(img).permute(2, 0, 1) - torch.tensor(PIXEL_MEAN).view(3, 1, 1)) \
        / torch.tensor(PIXEL_STD).view(3, 1, 1)
    padded = pad_image(img, S)
    assert padded.dtype == torch.uint8 and (padded[:, hw[0]:] == 0).all() and (padded[:, :, hw[1]:] == 0).all()
    size = torch.tensor(hw)
    got = normalize_images(padded, size)
    assert got.dtype == torch.float32
    assert torch.equal(got, ref) and torch.equal(got, _old_normalize_pad(img, S))
    assert (got.view(torch.int32) == ref.view(torch.int32)).all()  # bit for bit (+0.0 padding, not -0.0)
    assert got[0, 0, 0] == (0 - MEAN32[0]) / STD32[0]
    dirty = torch.full((3, S, S), 5, dtype=torch.uint8)
    assert pad_image(img, S, out=dirty).data_ptr() == dirty.data_ptr() and torch.equal(dirty, padded)
    flipped = normalize_images(pad_image(np.ascontiguousarray(img[:, ::-1]), S), size)
    assert torch.equal(flipped[:, :hw[0], :hw[1]], ref[:, :hw[0], :hw[1]].flip(-1))
    # a batch: several sizes at once, float images untouched, the input not modified
    batch = {"image": torch.stack([padded, pad_image(img[: hw[0] // 2 + 1], S)]),
             "input_size": torch.tensor([hw, (hw[0] // 2 + 1, hw[1])])}
    out = normalize_batch(batch)
    assert batch["image"].dtype == torch.uint8 and torch.equal(out["image"][0], ref)
    assert torch.equal(out["image"][1], _old_normalize_pad(img[: hw[0] // 2 + 1], S))
    assert normalize_batch(out)["image"] is out["image"]
    with pytest.raises(ValueError, match="input_size"):
        normalize_images(padded, None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_normalize_on_the_gpu_equals_the_old_lookup():
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, hw + (3,), dtype=np.uint8) for hw in ((480, 640), (640, 427), (333, 500))]
    S = 640
    image = torch.stack([pad_image(im, S) for im in imgs]).cuda()
    size = torch.tensor([im.shape[:2] for im in imgs]).cuda()
    got = normalize_images(image, size).cpu()
    for i, im in enumerate(imgs):
        ref = _old_normalize_pad(im, S)
        assert (got[i].view(torch.int32) == ref.view(torch.int32)).all()


def test_collate_with_numpy_equals_torch_stack():
    rng = np.random.default_rng(0)
    samples = [{"image": torch.from_numpy(rng.random((3, 4, 4), np.float32)),
                "masks": torch.from_numpy(rng.random((2, 4, 4)) < 0.5),
                "boxes": torch.from_numpy(rng.random((2, 4), np.float32)), "gt_boxes": torch.zeros(2, 4),
                "points": torch.zeros(2, 1, 2), "point_labels": torch.ones(2, 1, dtype=torch.int64),
                "valid": torch.tensor([True, False]), "ppn_heatmap": torch.rand(3, 2, 2),
                "ppn_boxes": torch.rand(3, 4, 2, 2).to(torch.bfloat16),  # numpy has no bfloat16: torch.stack
                "ppn_box_weight": torch.rand(3, 2, 2), "ppn_ignore": torch.zeros(2, 2, dtype=torch.bool),
                "original_size": torch.tensor([4, 4]), "input_size": torch.tensor([4, 4]),
                "all_boxes": torch.zeros(i + 1, 4), "key": f"k{i}", "num_skipped": i} for i in range(3)]
    batch = collate_samples(samples)
    for k in ("image", "masks", "boxes", "point_labels", "valid", "ppn_heatmap", "ppn_boxes", "ppn_ignore"):
        assert torch.equal(batch[k], torch.stack([s[k] for s in samples])), k
        assert batch[k].dtype == samples[0][k].dtype
    assert batch["key"] == ["k0", "k1", "k2"] and batch["num_skipped"].tolist() == [0, 1, 2]
    assert zeros_batch_tensor((2, 3), torch.float32).sum() == 0


def test_validation_points_are_reproducible():
    """Masks with many equidistant interior pixels (discs, rectangles): the same point on every call."""
    rng = np.random.default_rng(5)
    masks = np.zeros((40, 96, 96), bool)
    for i, m in enumerate(masks):
        cx, cy = (int(v) for v in rng.integers(20, 76, 2))
        r = int(rng.integers(3, 20))
        if i % 2:
            disc = np.zeros((96, 96), np.uint8)
            cv2.circle(disc, (cx, cy), r, 1, -1)
            m[:] = disc.astype(bool)
        else:
            m[cy - r:cy + r, cx - r // 2:cx + r] = True
    boxes = np.array([[np.nonzero(m)[1].min(), np.nonzero(m)[0].min(), np.nonzero(m)[1].max() + 1,
                       np.nonzero(m)[0].max() + 1] for m in masks], np.float32)
    first = interior_points(masks, boxes)
    for _ in range(5):
        np.testing.assert_array_equal(interior_points(masks, boxes), first)
    for m, (x, y) in zip(masks, first[:, 0].astype(int)):
        assert m[y, x]
