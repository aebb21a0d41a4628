"""benchmarks.toolkit: the JSON writer and error text (``results``), the timing (``timing``), the paper's figures
(``paper``: each lives there and nowhere else in benchmarks/) and SegEvery's options as the benchmarks' flags (the
flags themselves: ``tests/inference/test_segevery_api.py``)."""
from __future__ import annotations

import ast
import math
import time

import numpy as np
import pytest
import torch

from benchmarks.toolkit import paper
from benchmarks.toolkit.results import error_text, write_json
from benchmarks.toolkit.timing import Laps, interleaved, quantile
from litesam_pl import files
from litesam_pl.inference.segevery_options import SegEveryOptions
from tests.helpers import REPO

# ----------------------------------------------------------------------------------------------------- results


def test_write_json_is_the_library_writer(tmp_path):
    """The benchmarks' JSON writer is ``litesam_pl.files.write_json`` (strict JSON, atomic: ``tests/test_files.py``),
    with the benchmarks' layout: one-space indent and a final newline."""
    assert write_json is files.write_json
    path = write_json(tmp_path / "sub" / "r.json", {"nan": float("nan"), "np": np.float32(0.5)})
    assert path.read_text() == '{\n "nan": null,\n "np": 0.5\n}\n'
    write_json(path, [{"a": 1}], indent=None)  # one line (COCO results files)
    assert path.read_text() == '[{"a": 1}]\n'


def test_error_text_is_one_line():
    assert error_text(TypeError("Got unsupported\n  ScalarType  BFloat16")) == \
        "TypeError: Got unsupported ScalarType BFloat16"
    assert error_text(KeyboardInterrupt()) == "KeyboardInterrupt"
    long = error_text(ValueError("x" * 1000), limit=50)
    assert len(long) == 50 and long.endswith("...") and long.startswith("ValueError: x")


# ------------------------------------------------------------------------------------------------------ timing


def test_laps_time_consecutive_phases():
    laps = Laps(torch.device("cpu"))
    time.sleep(0.01)
    first = laps.lap("a")
    laps.lap()  # unnamed: timed, not kept
    time.sleep(0.02)
    second = laps.lap("b")
    assert list(laps.phases) == ["a", "b"] and laps.phases == {"a": first, "b": second}
    assert first >= 0.009 and second >= 0.019
    assert laps.total >= first + second and laps.total == pytest.approx(laps.last - laps.start)


def test_interleaved_reverses_the_order_every_turn():
    got = list(interleaved(["img0", "img1", "img2"], ["a", "b", "c"]))
    assert got == [("img0", "a"), ("img0", "b"), ("img0", "c"), ("img1", "c"), ("img1", "b"), ("img1", "a"),
                   ("img2", "a"), ("img2", "b"), ("img2", "c")]
    assert list(interleaved(iter(range(2)), ("x",))) == [(0, "x"), (1, "x")]  # any iterable of turns


def test_quantile():
    assert quantile([3.0, 1.0, 2.0, 10.0], 0.5) == 2.5 and quantile([1.0, 2.0], 0.9) == pytest.approx(1.9)
    assert math.isnan(quantile([], 0.5))


# ------------------------------------------------------------------------------------------------------- paper


def _paper_figures() -> set:
    """Every figure of the paper's tables with three or more significant digits (0.75 or 4.0 are too common)."""
    figs = {m["params_m"] for m in paper.COMPLEXITY.values()} | {
        v for m in paper.COMPLEXITY.values() for v in m["macs_g"].values()}
    figs |= set(paper.TABLE2_MASK_AR1000.values())
    for table in (paper.TABLE5_6, paper.TABLE5_6_R1024, paper.TABLE7):
        figs |= {v for row in table.values() for v in row.values()}
    return {v for v in figs if v is not None and len(repr(float(v)).replace(".", "").strip("0")) >= 3}


def test_paper_figures_live_once():
    """No number of the paper's tables is written anywhere else in benchmarks/ (docstrings aside)."""
    figs = _paper_figures()
    assert {74.8, 52.8, 48.8, 0.761, 371.0, 10.9} <= figs
    found = []
    for path in sorted((REPO / "benchmarks").rglob("*.py")):
        if path == REPO / "benchmarks" / "toolkit" / "paper.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, float) and node.value in figs:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value}")
    assert not found, found


def test_paper_ratios_follow_the_tables():
    for key, ((a, sa), (b, sb)) in paper.COMPLEXITY_RATIO_PAIRS.items():
        assert paper.COMPLEXITY_RATIOS[key] == paper.COMPLEXITY[a]["macs_g"][sa] / paper.COMPLEXITY[b]["macs_g"][sb]
    assert paper.COMPLEXITY_RATIOS["litesam MACs 1024/640"] == pytest.approx(32.5 / 12.7)
    assert set(paper.TABLE5_6) == set(paper.TABLE5_6_R1024) == {"coco", "lvis"}
    assert all(set(r) == set(paper.TABLE7_COLUMNS) for r in paper.TABLE7.values())
    assert len(paper.TABLE2_MASK_AR1000) == 8


# ------------------------------------------------------------------------------------------------------- flags


def test_benchmarks_take_segevery_options_from_the_library():
    """The SegEvery flags of each benchmark keep their names and defaults, and parse into valid options."""
    from benchmarks import bsds, ci, segevery
    from benchmarks._eval_common import _parser

    lib = SegEveryOptions()
    a = segevery.build_parser().parse_args([])
    assert (a.top_n, a.pred_iou_thresh, a.stability_score_thresh) == (
        lib.top_n, lib.pred_iou_thresh, lib.stability_score_thresh) == (256, 0.88, 0.95)
    assert SegEveryOptions.from_args(segevery.build_parser().parse_args(["--top-n", "8"])).top_n == 8
    a = ci.build_parser().parse_args([])
    assert (a.top_n, a.points_per_side) == (lib.top_n, lib.points_per_side) == (256, 32)
    a = _parser("coco", "").parse_args(["--ann", "a", "--images", "b", "--json", "c"])
    assert (a.ppn_top_n, a.ppn_score_threshold, a.points_per_side) == (256, 0.0, 32)
    a = bsds.build_parser().parse_args(["--data", "d"])
    assert (a.points_per_side, a.box_nms_thresh, a.nms, a.prompts) == (16, 0.7, "box", "auto")
    with pytest.raises(SystemExit):
        bsds.build_parser().parse_args(["--data", "d", "--nms", "soft"])
