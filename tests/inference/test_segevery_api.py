"""SegEvery's object API (issue 14): ``SegEveryOptions`` (defaults, checks), ``SegEvery(model, options).run`` ->
``SegEveryResult`` (masks, timings, stats), ``segment_everything`` as its thin functional form, and the
``litesam segment-everything`` flags generated from the options."""
from __future__ import annotations

import argparse
import dataclasses
import inspect

import numpy as np
import pytest
import torch

import litesam_pl
from litesam_pl.inference.app import build_parser, main
from litesam_pl.inference.sam_compat import as_image_list
from litesam_pl.inference.segevery import PHASES, SegEvery, SegEveryOptions, SegEveryResult, segment_everything
from litesam_pl.inference.segevery_options import OptionError, add_option_flags, option_flag

LOOSE = dict(prompts="grid", points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), rng.integers(0, 255, (64, 40, 3), dtype=np.uint8)]


def test_options_are_declared_once_and_frozen():
    o = SegEveryOptions()
    sig = inspect.signature(segment_everything).parameters
    for f in dataclasses.fields(SegEveryOptions):
        assert sig[f.name].default == f.default and f.metadata["help"], f.name
        assert f.name in SegEveryOptions.__doc__
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.top_n = 3  # type: ignore[misc]
    assert o.replace(top_n=3).top_n == 3 and o.top_n == 256
    assert o.to_dict()["chunk_size"] == 256 and set(o.to_dict()) == set(SegEveryOptions.names())
    assert litesam_pl.SegEveryOptions is SegEveryOptions and litesam_pl.SegEvery is SegEvery


@pytest.mark.parametrize("bad", [
    {"prompts": "boxes"}, {"top_n": 0}, {"top_n": 2.5}, {"score_threshold": 3.0}, {"nms_kernel": 0},
    {"prompt_type": "scribble"}, {"multimask_output": 3}, {"pred_iou_thresh": float("nan")},
    {"stability_score_offset": float("inf")}, {"box_nms_thresh": 2}, {"nms": "soft"}, {"nms_resolution": -1},
    {"max_masks": 0}, {"output_mode": "rle"}, {"return_logits": 1}, {"chunk_size": -1}, {"decoder": "onnx"},
    {"autocast_dtype": "bf16"}, {"image_batch_size": 0}, {"prompts": "grid", "rank_by": "ppn_score"},
])
def test_bad_options_raise_one_line_errors_naming_them(bad):
    with pytest.raises(OptionError) as err:
        SegEveryOptions(**bad)
    msg = str(err.value)
    assert isinstance(err.value, ValueError) and "\n" not in msg and list(bad)[-1] in msg
    assert err.value.for_owner("X").args[0].startswith("X: ")


def test_thresholds_accept_any_number_as_segment_everything_did():
    """``<= 0`` switches a filter off (-inf: edges.py), ``> 1`` removes everything."""
    assert SegEveryOptions(pred_iou_thresh=float("-inf"), stability_score_thresh=2.0).pred_iou_thresh == -np.inf


def test_run_returns_masks_timings_and_stats(tiny_model, images):
    seg = SegEvery(tiny_model, SegEveryOptions(**LOOSE), chunk_size=5)
    assert seg.options.chunk_size == 5 and seg.options.prompts == "grid"
    res = seg.run(images)
    assert isinstance(res, SegEveryResult) and len(res.masks) == 2
    assert set(res.timings) <= set(PHASES) and {"encoder", "decoder"} <= set(res.timings)
    assert len(res.stats["filters"]) == 2 and len(res.stats["prompts"]) == 2
    # the functional form returns the same masks, and only them: timings and stats are the result's, never
    # written into dicts passed in
    recs = segment_everything(tiny_model, images, chunk_size=5, **LOOSE)
    assert [len(r) for r in recs] == [len(r) for r in res.masks]
    for a, b in zip(recs, res.masks):
        for ra, rb in zip(a, b):
            np.testing.assert_array_equal(ra["segmentation"], rb["segmentation"])
    assert not {"stats", "timings"} & set(inspect.signature(segment_everything).parameters)
    for gone in ("stats", "timings"):
        with pytest.raises(TypeError, match=gone):
            segment_everything(tiny_model, images, **{gone: {}}, **LOOSE)
    # without collection: empty, and one image in gives one result
    one = seg.run(images[0], collect_timings=False, collect_stats=False)
    assert one.timings == {} and one.stats == {} and isinstance(one.masks, list)
    with pytest.raises(TypeError, match="SegEveryOptions"):
        SegEvery(tiny_model, {"top_n": 3})
    with pytest.raises(ValueError, match="top_n"):
        SegEvery(tiny_model, top_n=0)


def test_segment_everything_names_an_unknown_option_in_one_line():
    """``stats=`` / ``timings=`` (the dicts it once filled) point to ``SegEveryResult``; any other unknown keyword is
    named with the closest option. Both before the model is touched."""
    for gone in ("stats", "timings"):
        with pytest.raises(TypeError) as err:
            segment_everything(None, [], **{gone: {}}, top_n=3)
        assert str(err.value) == (f"segment_everything: unexpected option {gone!r} (it returns the masks only; for "
                                  f"the {gone} read SegEvery(model, options).run(images).{gone})")
    with pytest.raises(TypeError) as err:
        segment_everything(None, [], topn=3)
    msg = str(err.value)
    assert msg.startswith("segment_everything: unexpected option 'topn' (did you mean 'top_n'? options: prompts, ")
    assert "\n" not in msg and all(name in msg for name in SegEveryOptions.names())


def test_cli_flags_come_from_the_options():
    args = build_parser().parse_args(["x.jpg"])
    cli = SegEveryOptions.flag_names()
    assert {"prompts", "top_n", "score_threshold", "points_per_side", "prompt_type", "multimask_output",
            "pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "max_masks"} <= set(cli)
    assert not {"output_mode", "return_logits", "autocast_dtype"} & set(cli)
    assert SegEveryOptions.from_args(args) == SegEveryOptions()
    args = build_parser().parse_args(["x.jpg", "--top-n", "7", "--no-multimask-output", "--nms", "box"])
    assert SegEveryOptions.from_args(args) == SegEveryOptions(top_n=7, multimask_output=False, nms="box")
    assert torch.float32 != SegEveryOptions.from_args(args, autocast_dtype=torch.bfloat16).autocast_dtype


def test_option_flags_names_defaults_and_flags():
    """``add_option_flags(parser, names, defaults=, flags=)``: only ``names`` (in that order), another default (said
    in the help) and another flag name (argparse's dest for it); all by default, as ``litesam segment-everything``."""
    every = argparse.ArgumentParser()
    add_option_flags(every)
    assert [a.dest for a in every._actions[1:]] == list(SegEveryOptions.flag_names())
    assert [a.option_strings[0] for a in every._actions[1:]] == [option_flag(n) for n in SegEveryOptions.flag_names()]
    p = argparse.ArgumentParser()
    add_option_flags(p, ("nms", "top_n", "score_threshold", "points_per_side"),
                     defaults={"score_threshold": 0.0, "points_per_side": 16}, flags={"top_n": "--ppn-top-n"})
    assert [a.dest for a in p._actions[1:]] == ["nms", "ppn_top_n", "score_threshold", "points_per_side"]
    a = p.parse_args([])
    assert (a.nms, a.ppn_top_n, a.score_threshold, a.points_per_side) == ("mask", 256, 0.0, 16)
    a = p.parse_args(["--ppn-top-n", "8", "--points-per-side", "4", "--nms", "box"])
    assert (a.ppn_top_n, a.points_per_side, a.nms) == (8, 4, "box") and isinstance(a.ppn_top_n, int)
    with pytest.raises(SystemExit):  # the option's choices
        p.parse_args(["--nms", "soft"])
    with pytest.raises(SystemExit):  # the renamed flag replaces the option's own
        p.parse_args(["--top-n", "8"])
    helps = {a.dest: a.help for a in p._actions[1:]}
    assert helps["points_per_side"].endswith("(default 16)") and helps["score_threshold"].endswith("(default 0.0)")
    assert helps["ppn_top_n"] == {a.dest: a.help for a in every._actions}["top_n"]
    with pytest.raises(ValueError, match="not SegEvery option flags"):  # not a cli option
        add_option_flags(argparse.ArgumentParser(), ("top_n", "autocast_dtype"))
    with pytest.raises(ValueError, match="not SegEvery option flags"):
        add_option_flags(argparse.ArgumentParser(), defaults={"output_mode": "tensors"})
    with pytest.raises(ValueError, match="not in names"):
        add_option_flags(argparse.ArgumentParser(), ("top_n",), flags={"nms": "--nms-kind"})


def test_cli_bad_option_is_one_line_naming_the_flag(capsys):
    assert main(["nowhere.jpg", "--top-n", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["litesam segment-everything: error: --top-n must be an integer >= 1, got 0"]


@pytest.mark.parametrize("decoder", ["fast", "stock"])
def test_decode_step_returns_float32_under_autocast(tiny_model, images, decoder):
    """``SegEvery.decode`` casts the decoder's outputs (logits, IoU, the counted IoU) to float32 once, so the mask
    stage reads them as they are."""
    seg = SegEvery(tiny_model, prompts="grid", points_per_side=3, decoder=decoder, autocast_dtype=torch.bfloat16)
    ctx = seg._start(collect_timings=False, collect_stats=True)
    prep, emb = seg.encode(as_image_list(images[0])[0], ctx)
    pr = seg.propose(emb, prep.input_sizes, ctx)[0]
    dec = seg.decode(emb, pr, ctx)
    assert dec.low.dtype == dec.iou.dtype == dec.iou_all.dtype == torch.float32
    assert dec.iou_all.shape == (9, 3) and dec.rows.dtype == torch.long
