"""AudioCaps (v1, v2, older flat layout) and Clotho folders as aac-datasets writes them; bad input."""

from __future__ import annotations

import paper_fixtures as fixtures
import pytest

from dlink import data, paths


@pytest.fixture(autouse=True)
def _scratch_cache(tmp_path, monkeypatch):
    """load_split keeps its audio checks under paths.CACHE: a scratch one, not the checkout's."""
    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")


@pytest.mark.parametrize("layout", ["v1", "v2", "flat"])
def test_audiocaps_layouts_read_alike(tmp_path, layout):
    fixtures.make_audiocaps(tmp_path, layout=layout, counts=(3, 2, 2), seconds=0.2)
    train = data.load_split("train", dataset="audiocaps", root=tmp_path)
    test = data.load_split("test", dataset="audiocaps", root=tmp_path)
    assert len(train) == 3 and all(len(c) == 1 for c in train["captions"])
    assert len(test) == 2 and all(len(c) == 5 for c in test["captions"])
    assert test["id"].iat[1] == f"te{layout}Yt001_40" and test["audio"].iat[1].endswith(
        "te" + layout + "Yt001_40.flac"
    )


def test_audiocaps_train_clips_keep_the_same_caption_count(tmp_path):
    fixtures.make_audiocaps(tmp_path, counts=(3, 2, 2), seconds=0.2)
    csv = tmp_path / "AUDIOCAPS" / "csv_files_v1" / "train.csv"
    first = csv.read_text().splitlines()[1].split(",")
    csv.write_text(csv.read_text() + f"999,{first[1]},{first[2]},A second caption for clip zero\n")
    train = data.load_split("train", dataset="audiocaps", root=tmp_path)
    assert [len(c) for c in train["captions"]] == [1, 1, 1] and train["captions"].iat[0][
        0
    ] != "A second caption"


def test_audiocaps_bad_csvs_name_the_file(tmp_path):
    fixtures.make_audiocaps(tmp_path, counts=(2, 2, 2), seconds=0.2)
    csv = tmp_path / "AUDIOCAPS" / "csv_files_v1" / "val.csv"
    lines = csv.read_text().splitlines()
    lines[3] = lines[3].replace(",30,", ",thirty,")  # clip 0 starts at 30 s
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{csv}, data row 3: start_time .* is not a number"):
        data.load_split("val", dataset="audiocaps", root=tmp_path)
    csv.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0binary")
    with pytest.raises(ValueError, match=rf"{csv} is not a text CSV"):
        data.load_split("val", dataset="audiocaps", root=tmp_path)
    csv.write_text("file_name,caption_1\nx.wav,hello\n")
    with pytest.raises(ValueError, match=rf"{csv} lacks columns \['audiocap_id', 'youtube_id', 'start_time'"):
        data.load_split("val", dataset="audiocaps", root=tmp_path)


def test_a_folder_of_another_layout_names_the_expected_files(tmp_path):
    (tmp_path / "wavs").mkdir()
    with pytest.raises(
        FileNotFoundError, match=r"not an aac-datasets audiocaps folder.*csv_files_v1/<split>\.csv"
    ):
        data.load_split("train", dataset="audiocaps", root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"clotho_captions_<subset>\.csv"):
        data.load_split("test", dataset="clotho", root=tmp_path)


def test_clotho_layout(tmp_path):
    fixtures.make_clotho(tmp_path, counts=(2, 2, 3), seconds=0.2)
    test = data.load_split("test", dataset="clotho", root=tmp_path)
    assert list(test["id"]) == [f"evaluation clip {i:02d}.wav" for i in range(3)]
    assert all(len(c) == 5 for c in test["captions"])


def test_csv_file_names_outside_data_root_are_refused(tmp_path):
    root = fixtures.make_clotho(tmp_path / "clotho", counts=(2, 2, 2), seconds=0.2)
    secret = tmp_path / "secret.wav"
    fixtures._tone(secret, 0.2, 44100, 440)
    csv = root / "CLOTHO_v2.1" / "clotho_csv_files" / "clotho_captions_evaluation.csv"
    text = csv.read_text()
    for bad in ("../../../../secret.wav", str(secret)):
        csv.write_text(text.replace("evaluation clip 01.wav", bad))
        with pytest.raises(ValueError, match=rf"{csv}, data row 2: file_name .*points outside data_root"):
            data.load_split("test", dataset="clotho", root=root)
    fixtures.make_audiocaps(tmp_path / "ac", counts=(2, 2, 2), seconds=0.2)
    csv = tmp_path / "ac" / "AUDIOCAPS" / "csv_files_v1" / "test.csv"
    csv.write_text(csv.read_text().replace("tev1Yt001", "../../../../secret", 1))
    with pytest.raises(ValueError, match=rf"{csv}, data row \d+: youtube_id '../../../../secret'"):
        data.load_split("test", dataset="audiocaps", root=tmp_path / "ac")


def test_missing_and_undecodable_audio_is_counted_listed_and_bounded(tmp_path):
    fixtures.make_audiocaps(tmp_path, counts=(2, 10, 2), seconds=0.2)
    audio = tmp_path / "AUDIOCAPS" / "audio_32000Hz" / "val"
    files = sorted(audio.iterdir())
    files[0].unlink()
    files[1].write_bytes(b"not audio at all")
    with pytest.warns(UserWarning, match=r"audiocaps val .*skipping 2 of 10 clips \(20.0%\)"):
        val = data.load_split("val", dataset="audiocaps", root=tmp_path, max_missing=0.25)
    assert len(val) == 8
    assert [s["reason"].split(":")[0] for s in val.attrs["skipped"]] == ["missing", "undecodable"]
    assert val.attrs["skipped"][0]["audio"] == str(files[0])
    # past the threshold the run stops instead of scoring on what is left
    with pytest.raises(
        ValueError, match=r"2 of 10 clips \(20%\) have missing or unreadable audio.*max_missing=10%"
    ):
        data.load_split("val", dataset="audiocaps", root=tmp_path, max_missing=0.1)


def sf_frames(path) -> int:
    import soundfile as sf

    return sf.info(str(path)).frames


def _damage(path, how: str) -> None:
    """Keep `path`'s valid WAV header, spoil its samples."""
    import numpy as np
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32")
    if how == "nan":  # a float WAV whose data chunk holds NaN: the header is fine, no sample is
        sf.write(str(path), np.full_like(x, np.nan), sr, subtype="FLOAT")
    elif how == "silent":
        sf.write(str(path), np.zeros_like(x), sr)
    elif how == "short":  # the header says so honestly: 10 ms, under load_audio's 0.1 s
        sf.write(str(path), x[: sr // 100], sr)


def test_damaged_content_behind_a_valid_header_is_skipped_not_fatal(tmp_path):
    from dlink import experiment

    root = fixtures.make_clotho(tmp_path / "clotho", counts=(2, 2, 10), seconds=0.2)
    audio = root / "CLOTHO_v2.1" / "clotho_audio_files" / "evaluation"
    files = sorted(audio.iterdir())
    for f, how in zip(files[:3], ("nan", "silent", "short"), strict=True):
        _damage(f, how)
        assert sf_frames(f) > 0  # the header alone passes
    with pytest.warns(UserWarning, match=r"clotho test .*skipping 3 of 10 clips \(30.0%\)"):
        test = data.load_split("test", dataset="clotho", root=root, max_missing=0.5)
    assert len(test) == 7
    reasons = {s["audio"]: s["reason"] for s in test.attrs["skipped"]}
    assert list(reasons) == [str(f) for f in files[:3]]
    assert all(r.startswith("undecodable: ") for r in reasons.values())
    assert "NaN or inf" in reasons[str(files[0])] and "silent" in reasons[str(files[1])]
    for path in test["audio"]:  # what feature extraction reads: every kept clip loads
        data.load_audio(path)
    out = experiment._write_skipped(tmp_path / "skipped_audio_clotho.csv", {"test": test})
    assert out.read_text().count("\ntest,") == 3
    with pytest.raises(ValueError, match=r"3 of 10 clips \(30%\) have missing or unreadable audio"):
        data.load_split("test", dataset="clotho", root=root, max_missing=0.2)


def test_the_audio_check_runs_once_per_file_state(tmp_path, monkeypatch):
    root = fixtures.make_clotho(tmp_path / "clotho", counts=(2, 2, 3), seconds=0.2)
    assert len(data.load_split("test", dataset="clotho", root=root)) == 3
    calls = []
    real = data.unreadable
    monkeypatch.setattr(data, "unreadable", lambda p: calls.append(p) or real(p))
    assert len(data.load_split("test", dataset="clotho", root=root)) == 3 and calls == []
    # a file rewritten since (size or mtime changed) is checked again, here found damaged
    victim = sorted((root / "CLOTHO_v2.1" / "clotho_audio_files" / "evaluation").iterdir())[0]
    _damage(victim, "nan")
    with pytest.warns(UserWarning, match="skipping 1 of 3"):
        assert len(data.load_split("test", dataset="clotho", root=root, max_missing=0.5)) == 2
    assert len(calls) == 3


def test_the_skipped_list_is_written_beside_the_results(tmp_path):
    import pandas as pd

    from dlink import experiment

    frame = pd.DataFrame({"id": ["a"]})
    frame.attrs["skipped"] = [{"id": "b", "audio": "/x/b.flac", "reason": "missing"}]
    out = experiment._write_skipped(tmp_path / "skipped_audio_audiocaps.csv", {"val": frame})
    assert out.read_text() == "split,id,audio,reason\nval,b,/x/b.flac,missing\n"


def test_audiocaps_version_picks_the_captions_and_both_present_warns(tmp_path):
    fixtures.make_audiocaps(tmp_path, layout="v1", counts=(2, 2, 2), seconds=0.2)
    fixtures.make_audiocaps(tmp_path, layout="v2", counts=(2, 2, 3), seconds=0.2)
    with pytest.warns(UserWarning, match="holds AudioCaps 1 and 2.0 captions; using AudioCaps 1"):
        assert len(data.load_split("test", dataset="audiocaps", root=tmp_path)) == 2
    v2 = data.load_split("test", dataset="audiocaps", root=tmp_path, audiocaps_version="v2")
    assert len(v2) == 3 and v2["id"].iat[0].startswith("tev2")
    assert len(data.load_split("test", dataset="audiocaps", root=tmp_path, audiocaps_version="v1")) == 2
    with pytest.raises(ValueError, match="audiocaps_version='v3'"):
        data.load_split("test", dataset="audiocaps", root=tmp_path, audiocaps_version="v3")


@pytest.mark.parametrize("folder, name", [("audio_16000Hz", "Y{yid}.wav"), ("audio", "{yid}.wav")])
def test_audiocaps_mirror_layouts(tmp_path, folder, name):
    fixtures.make_audiocaps(tmp_path, counts=(2, 2, 2), seconds=0.2)
    base = tmp_path / "AUDIOCAPS"
    (base / folder).mkdir(exist_ok=True)
    (base / "audio_32000Hz" / "test").rename(base / folder / "test")
    for f in (base / folder / "test").iterdir():
        yid = f.stem.rsplit("_", 1)[0]
        f.rename(f.with_name(name.format(yid=yid)).with_suffix(".wav"))
    test = data.load_split("test", dataset="audiocaps", root=tmp_path)
    assert len(test) == 2 and test["audio"].iat[1] == str(
        base / folder / "test" / name.format(yid="tev1Yt001")
    )


def test_clotho_dcase_layout(tmp_path):
    import shutil

    fixtures.make_clotho(tmp_path / "aac", counts=(2, 2, 3), seconds=0.2)
    src = tmp_path / "aac" / "CLOTHO_v2.1"
    dcase = tmp_path / "dcase"
    dcase.mkdir()
    # the Zenodo files: clotho_captions_<subset>.csv beside the extracted <subset>/ folder
    shutil.copy(src / "clotho_csv_files" / "clotho_captions_evaluation.csv", dcase)
    shutil.copytree(src / "clotho_audio_files" / "evaluation", dcase / "evaluation")
    test = data.load_split("test", dataset="clotho", root=dcase)
    assert len(test) == 3 and test["audio"].iat[0] == str(dcase / "evaluation" / "evaluation clip 00.wav")


def test_a_truncated_wav_warns(tmp_path):
    f = tmp_path / "clip.wav"
    fixtures._tone(f, 1.0, 32000, 440)
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2])
    with pytest.warns(
        UserWarning, match=r"clip\.wav is truncated: its header declares 1\.00 s, the file holds 0\.50 s"
    ):
        x = data.load_audio(f)
    assert 0.45 < len(x) / 32000 < 0.55


@pytest.mark.parametrize("bad", [1, 1.0, -0.1, 2, float("nan"), "0.2", True, None])
def test_max_missing_is_a_share_below_one(tmp_path, bad):
    from dlink.profiles import resolve_params

    root = fixtures.make_clotho(tmp_path, counts=(2, 2, 2), seconds=0.2)
    with pytest.raises(ValueError, match=rf"max_missing={bad!r} must be a number with 0 <= max_missing < 1"):
        data.load_split("test", dataset="clotho", root=root, max_missing=bad)
    if bad is not None:  # None is resolve_params' "the loader's default"
        with pytest.raises(ValueError, match=r"invalid notebook parameters:\n.*max_missing="):
            resolve_params(profile="smoke", dataset="clotho", data_root=str(root), max_missing=bad)


def test_max_missing_reaches_the_loader_from_the_run_parameters(tmp_path, monkeypatch):
    from dlink import experiment
    from dlink.profiles import resolve_params

    monkeypatch.setattr(experiment.paths, "RESULTS", tmp_path / "results")  # the cache: _scratch_cache
    root = fixtures.make_clotho(tmp_path / "clotho", counts=(4, 4, 4), seconds=0.2)
    (root / "CLOTHO_v2.1" / "clotho_audio_files" / "development" / "development clip 00.wav").unlink()
    assert resolve_params(profile="smoke", dataset="clotho", data_root=str(root)).max_missing is None
    with pytest.raises(ValueError, match=r"1 of 4 clips \(25%\).*max_missing=20%"):
        experiment.splits(resolve_params(profile="smoke", dataset="clotho", data_root=str(root)))
    params = resolve_params(profile="smoke", dataset="clotho", data_root=str(root), max_missing=0.3)
    assert params.max_missing == 0.3 and params.as_dict()["max_missing"] == 0.3
    with pytest.warns(UserWarning, match="skipping 1 of 4"):
        assert len(experiment.splits(params)["train"]) == 3
    assert (
        "train,development clip 00.wav,"
        in (tmp_path / "results" / params.label / "skipped_audio_clotho.csv").read_text()
    )
    with pytest.raises(ValueError, match="max_missing=0.3 applies to dataset='audiocaps' or 'clotho'"):
        resolve_params(profile="smoke", max_missing=0.3)
