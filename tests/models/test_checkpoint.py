"""litesam_pl.models.checkpoint: the atomic writer (``save_atomic``) and the warm start (``load_init_weights``)
reading files through the module's own ``_torch_load`` (one-line errors)."""
from __future__ import annotations

import pytest
import torch

import litesam_pl
from litesam_pl.models.checkpoint import EXPORT_FORMAT, export_payload, load_init_weights, read_checkpoint, save_atomic


class _NotWeights:
    """A pickled object that ``torch.load(weights_only=True)`` refuses."""


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return litesam_pl.create_model("litesam", img_size=64)


def test_save_atomic_writes_whole_files_only(tmp_path, monkeypatch):
    out = save_atomic({"x": torch.arange(3)}, tmp_path / "new" / "dir" / "a.pt")  # the parent is created
    assert out == tmp_path / "new" / "dir" / "a.pt" and torch.equal(torch.load(out, weights_only=True)["x"],
                                                                      torch.arange(3))
    assert [p.name for p in out.parent.iterdir()] == ["a.pt"]  # no .tmp left beside it

    def killed(obj, f):  # a save that dies half-way: the old file stays whole
        open(f, "wb").write(b"PK\x03\x04 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"x": torch.zeros(1)}, out)
    assert torch.equal(torch.load(out, weights_only=True)["x"], torch.arange(3))


def test_export_payload_through_save_atomic_reads_back(small_model, tmp_path):
    path = save_atomic(export_payload(small_model), tmp_path / "m.pt")
    cfg, state = read_checkpoint(path)
    assert torch.load(path, weights_only=True)["format"] == EXPORT_FORMAT and cfg["name"] == "litesam"
    assert set(state) == set(small_model.state_dict())


def test_load_init_weights_reads_through_torch_load(small_model, tmp_path):
    path = save_atomic(export_payload(small_model), tmp_path / "m.pt")
    torch.manual_seed(1)
    fresh = litesam_pl.create_model("litesam", img_size=64)
    rep = load_init_weights(fresh, str(path))
    assert not rep["skipped"] and not rep["missing"]
    for k, v in small_model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="init_from: cannot read the checkpoint: .*bad.ckpt is not a litesam-pl "
                                           "checkpoint or export .*not a loadable torch file"):
        load_init_weights(fresh, str(bad))
    pickled = tmp_path / "obj.ckpt"  # a torch file holding more than weights: refused, never unpickled
    torch.save({"state_dict": {}, "f": _NotWeights()}, pickled)
    with pytest.raises(RuntimeError, match="not a loadable weights-only torch file"):
        load_init_weights(fresh, str(pickled))
    with pytest.raises(FileNotFoundError, match="init_from: no checkpoint"):
        load_init_weights(fresh, str(tmp_path / "none.ckpt"))
