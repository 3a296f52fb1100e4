"""dlink._io: checkpoints are written as one atomic step and never load silently wrong."""

from __future__ import annotations

import json

import pytest
import torch

from dlink import _io
from dlink._io import load_checkpoint, save_checkpoint


def _save(folder, version: float):
    return save_checkpoint(folder, {"version": version}, {"w": torch.full((3,), version)})


def test_round_trip_keeps_other_files(tmp_path):
    ck = tmp_path / "ck"
    _save(ck, 1.0)
    (ck / "notes.txt").write_text("mine")
    _save(ck, 2.0)
    cfg, t = load_checkpoint(ck)
    assert cfg == {"version": 2.0} and torch.equal(t["w"], torch.full((3,), 2.0))
    assert (ck / "notes.txt").read_text() == "mine"  # a file beside the checkpoint is carried over
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temporary folder left behind


def test_save_interrupted_between_the_two_files_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    ck = tmp_path / "ck"
    _save(ck, 1.0)

    def killed(*args, **kwargs):  # the process dies after the weights, before the config
        raise KeyboardInterrupt

    monkeypatch.setattr(_io, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        _save(ck, 2.0)
    cfg, t = load_checkpoint(ck)
    # the old pair, consistent: never the old config with the NEW weights
    assert cfg == {"version": 1.0} and torch.equal(t["w"], torch.full((3,), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_swap_without_an_atomic_exchange_still_gives_a_complete_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(_io, "_exchange", lambda a, b: False)  # e.g. macOS: two renames instead
    ck = tmp_path / "ck"
    _save(ck, 1.0)
    _save(ck, 2.0)
    assert load_checkpoint(ck)[0] == {"version": 2.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_corrupted_tensor_bytes_are_refused_naming_file_and_tensor(tmp_path):
    ck = _save(tmp_path / "ck", 1.0)
    f = ck / "model.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-4:] = torch.tensor([float("nan")]).numpy().tobytes()  # header intact, last float -> NaN
    f.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"model\.safetensors: tensor 'w' holds NaN"):
        load_checkpoint(ck)


@pytest.mark.parametrize("cut", [0, 5, 40])
def test_truncated_or_empty_weights_name_the_file(tmp_path, cut):
    ck = _save(tmp_path / "ck", 1.0)
    f = ck / "model.safetensors"
    f.write_bytes(f.read_bytes()[:cut])
    with pytest.raises(ValueError, match=r"ck/model\.safetensors is not a readable safetensors file"):
        load_checkpoint(ck)


def test_config_that_is_not_an_object_or_lacks_a_key(tmp_path):
    ck = _save(tmp_path / "ck", 1.0)
    (ck / "config.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match=r"config\.json must hold a JSON object"):
        load_checkpoint(ck)
    (ck / "config.json").write_text(json.dumps({"bridge": "identity"}))
    with pytest.raises(ValueError, match=r"config\.json lacks 'dim'"):
        load_checkpoint(ck, required=("bridge", "dim"))


def test_meta_device_tensor_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="'w' .* meta device"):
        save_checkpoint(tmp_path / "ck", {}, {"w": torch.empty(3, device="meta")})
    assert not (tmp_path / "ck").exists()


def test_path_under(tmp_path):
    assert _io.path_under(tmp_path, "a/b", "stem") == tmp_path / "a" / "b"
    assert _io.path_under(tmp_path, "/abs/x", "stem").as_posix() == "/abs/x"
    for bad in ("../x", "../../../x", "a/../../x", ".", ""):
        with pytest.raises(ValueError, match="stem"):
            _io.path_under(tmp_path, bad, "stem")


def test_save_through_a_symlinked_folder_keeps_the_link(tmp_path):
    real, link = tmp_path / "real", tmp_path / "link"
    _save(real, 1.0)
    link.symlink_to(real)
    assert _save(link, 2.0) == link
    assert link.is_symlink() and load_checkpoint(link)[0] == {"version": 2.0}


def test_write_csv_gz_is_byte_reproducible_and_readable(tmp_path):
    import time

    import pandas as pd

    from dlink._io import write_csv_gz

    rows = [{"seed": 0, "item": "a", "CIDEr-D": "0.5"}, {"seed": 1, "item": "b", "CIDEr-D": "1.25"}]
    first = write_csv_gz(tmp_path / "items" / "x.csv.gz", rows).read_bytes()
    time.sleep(1.1)  # a gzip header with a timestamp would differ now
    assert write_csv_gz(tmp_path / "items" / "x.csv.gz", rows).read_bytes() == first
    assert pd.read_csv(tmp_path / "items" / "x.csv.gz")["CIDEr-D"].tolist() == [0.5, 1.25]
    with pytest.raises(ValueError, match="no rows"):
        write_csv_gz(tmp_path / "y.csv.gz", [])
