"""Complexity targets from the paper (Tables 1 and 6, ``benchmarks.toolkit.paper``): parameter counts and MAC
ratios; ``python -m benchmarks.complexity`` end to end on the meta device."""
from __future__ import annotations

import json

import pytest

from benchmarks.complexity import build_measured, count_macs, count_params, main
from benchmarks.toolkit.paper import COMPLEXITY, COMPLEXITY_RATIOS
from litesam_pl import create_model

PAPER_PARAMS_M = {name: COMPLEXITY[name]["params_m"] for name in ("litevit", "litevit_2x", "litevit_3x", "litesam")}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS_M))
def test_params_within_10_percent_of_paper(name):
    params = count_params(create_model(name)) / 1e6  # litevit*: backbone only (no neck); litesam: everything
    assert abs(params / PAPER_PARAMS_M[name] - 1) < 0.10, f"{name}: {params:.3f}M vs paper {PAPER_PARAMS_M[name]}M"


def test_litevit_macs_over_poolformer_s12_at_640():
    ours = count_macs(build_measured("litevit", 640), 640)
    poolformer = count_macs(build_measured("poolformer_s12", 640), 640)
    assert count_params(build_measured("poolformer_s12", 640)) == pytest.approx(11.92e6, rel=0.01)
    assert 0.15 <= ours / poolformer <= 0.35, (ours, poolformer)  # paper: 0.24
    assert COMPLEXITY_RATIOS["litevit / poolformer_s12 MACs @640"] == pytest.approx(0.241, abs=1e-3)


def test_litesam_macs_1024_over_640_matches_paper():
    r640 = count_macs(build_measured("litesam", 640), 640)
    r1024 = count_macs(build_measured("litesam", 1024), 1024)
    assert r640 > count_macs(build_measured("litevit", 640), 640)  # the single-prompt forward includes the decoder etc.
    assert abs((r1024 / r640) / COMPLEXITY_RATIOS["litesam MACs 1024/640"] - 1) < 0.10, (r640, r1024)


def test_complexity_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "complexity.json"
    assert main(["--models", "litevit", "--sizes", "640", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    entry = result["models"]["litevit"]
    assert isinstance(entry["params"], int) and isinstance(entry["macs"]["640"], int)
    assert "FlopCounterMode" in result["counter"]
    printed = capsys.readouterr().out
    assert "litevit" in printed and f"{COMPLEXITY['litevit']['macs_g']['640']:.1f}" in printed  # the paper's, beside
    assert set(result["ratios"]) == set(COMPLEXITY_RATIOS)
    assert result["ratios"]["litevit_2x / litevit MACs @640"]["ours"] is None  # litevit_2x not counted
    assert result["ratios"]["litesam MACs 1024/640"]["paper"] == COMPLEXITY_RATIOS["litesam MACs 1024/640"]
