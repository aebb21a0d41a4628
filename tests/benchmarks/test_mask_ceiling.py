"""benchmarks.mask_ceiling (``python -m benchmarks.mask_ceiling``): the AR of masks decoded from the exact GT prompts
is 1 for a decoder that returns the GT, and the command runs end to end on a tiny checkpoint (or its export) and
synthetic shards, reading the model through ``litesam_pl.models.checkpoint.load_model``."""
from __future__ import annotations

import json

import pytest
import torch

from benchmarks.mask_ceiling import FORMS, main, mask_ceiling
import litesam_pl
from litesam_pl.inference.export import export_weights
from tests.helpers import fake_batch


def test_mask_ceiling_is_one_for_a_decoder_that_returns_the_gt():
    m = litesam_pl.create_model("litesam", img_size=64).eval()
    batch = fake_batch(B=2, K=3, S=64)

    def predict_masks(emb, points=None, boxes=None, multimask_output=False):
        return torch.where(batch["masks"], 10.0, -10.0)[:, :, None], torch.ones(2, 3, 1)

    m.predict_masks = predict_masks
    res = mask_ceiling(m, [batch], 64)
    for form in ("box", "point+box"):
        assert res[form]["gt_prompt_mask_ar100"] == pytest.approx(1.0)
        assert res[form]["miou"] == pytest.approx(1.0) and res[form]["masks"] == 5


def test_command_on_a_checkpoint_and_shards(predict_ckpt, synthetic_sa1b, tmp_path, capsys):
    out = tmp_path / "ceiling" / "mc.json"
    shard = sorted(str(p) for p in synthetic_sa1b.glob("*.tar"))[0]
    assert main(["--ckpt", str(predict_ckpt), "--shards", shard, "--img-size", "64", "--max-masks", "4",
                 "--batch-size", "2", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["ckpt"] == str(predict_ckpt) and set(res["forms"]) == set(FORMS)
    for r in res["forms"].values():
        assert 0.0 <= r["gt_prompt_mask_ar100"] <= 1.0 and 0.0 <= r["miou"] <= 1.0 and r["masks"] > 0
    assert "GT-prompt mask AR@100" in capsys.readouterr().out
    # the same network from its export: the same figures
    exported = export_weights(litesam_pl.load_model(predict_ckpt), tmp_path / "m.pt")
    assert main(["--ckpt", str(exported), "--shards", shard, "--img-size", "64", "--max-masks", "4",
                 "--batch-size", "2", "--json", str(tmp_path / "mc2.json")]) == 0
    assert json.loads((tmp_path / "mc2.json").read_text())["forms"] == res["forms"]
    with pytest.raises(SystemExit):  # a missing checkpoint: argparse's one-line error
        main(["--ckpt", str(tmp_path / "none.ckpt"), "--shards", shard, "--img-size", "64"])
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    capsys.readouterr()
    with pytest.raises(SystemExit):  # not a model file: load_model's one line, as an argparse error
        main(["--ckpt", str(bad), "--shards", shard, "--img-size", "64"])
    assert "is not a litesam-pl checkpoint or export" in capsys.readouterr().err
