"""Tests for dlink.data and dlink.sounds: the embedded dataset, load_audio, the AudioCaps/Clotho loaders."""

from __future__ import annotations

import csv
import threading

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from dlink import data, sessions, sounds


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Two smoke builds with the same seed in different folders (the second reuses the clip cache)."""
    a = data.build_embedded_dataset("smoke", seed=0, force=True, root=tmp_path_factory.mktemp("a"))
    b = data.build_embedded_dataset("smoke", seed=0, force=True, root=tmp_path_factory.mktemp("b"))
    return a, b


def test_catalogue_covers_every_source_file():
    clips = sounds.scan_sources()
    assert len(clips) == 453  # 347 ufoai + 35 freedesktop + 61 wordwarvi + 10 ovos
    assert not [c.rid for c in clips if c.reason == "not curated"]
    kept = [c for c in clips if c.label]
    assert {c.label for c in kept} == set(sounds.LABELS)
    assert (
        sounds.classify("ufoai", "ambience/fire1.ogg")
        == sounds.classify("ufoai", "ambience/fire2.ogg")
        == ("fire", "")
    )
    assert sounds.classify("freedesktop", "audio-channel-front-left.oga")[0] is None
    assert sounds.classify("ufoai", "geoscape/info.ogg")[0] is None
    assert sounds.classify("ovos", "animals/dog.mp3") == ("dog", "")


def test_smoke_build_is_byte_identical(smoke):
    a, b = smoke
    for split in data.SPLITS:
        assert (a / f"{split}.csv").read_bytes() == (b / f"{split}.csv").read_bytes()
    assert (a / "audio" / "test_00003.wav").read_bytes() == (b / "audio" / "test_00003.wav").read_bytes()
    assert data.build_embedded_dataset("smoke", seed=0, root=a) == a  # complete build reused
    assert data._is_complete(a)


def test_smoke_build_matches_its_snapshot(smoke):
    # what notebook 01 prints for the first test scenes (its nbval output), so a change
    # to the data or caption code that alters the dataset fails here
    frame = data.load_split("test", size="smoke", seed=0, root=smoke[0])
    shown = [f"{r['id']} | " + " / ".join(r["captions"][:3]) for _, r in frame.head(3).iterrows()]
    assert shown == [
        "test_00000 | Metal clangs twice and then it is quiet / Metal clangs two times / Metal bangs twice",
        "test_00001 | A gun goes off in the distance before metal bangs close by / A gun fires in the distance "
        "and then a metal object is clanging close by / A firearm is firing softly, followed by metal clanging "
        "loudly",
        "test_00002 | A woman screams close by with a machine whirring in the background / A female voice is "
        "screaming close by as heavy machinery whirs and rattles / Heavy machinery runs as a woman is "
        "shrieking loudly",
    ]


def test_splits_share_no_recording_and_sizes(smoke):
    a, _ = smoke
    dfs = {s: data.load_split(s, size="smoke", root=a) for s in data.SPLITS}
    assert [len(dfs[s]) for s in data.SPLITS] == list(data.SIZES["smoke"])
    recs = {s: {r for rs in df["recordings"] for r in rs.split(";")} for s, df in dfs.items()}
    assert (
        not recs["train"] & recs["test"]
        and not recs["train"] & recs["val"]
        and not recs["val"] & recs["test"]
    )
    # and no recording session (carpet1..4, door1-open / door1-close) on two sides
    keys = {s: {sessions.session_key(r) for r in rs} for s, rs in recs.items()}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["val"]
    assert not keys["val"] & keys["test"]
    train_labels = {lab for ls in dfs["train"]["labels"] for lab in ls.split(";")}
    test_labels = {lab for ls in dfs["test"]["labels"] for lab in ls.split(";")}
    assert len(test_labels - train_labels) <= 3  # held-out recordings, mostly seen labels


def test_session_key_removes_takes_variants_and_actions_anywhere():
    key = sessions.session_key
    assert (
        key("ufoai:footsteps/carpet4.ogg") == key("ufoai:footsteps/carpet1.ogg") == "ufoai:footsteps/carpet"
    )
    assert key("wordwarvi:synthetic_gunshot_2.ogg") == "wordwarvi:synthetic-gunshot"
    assert key("ufoai:weapons/bullet-smg-5x.ogg") == key("ufoai:weapons/bullet-smg-15x.ogg")
    assert key("ufoai:weapons/bullet-smg-5x.ogg") == key("ufoai:weapons/bullet-smg.ogg")
    assert key("ufoai:doors/door1-open.ogg") == key("ufoai:doors/door3-close.ogg") == "ufoai:doors/door"
    assert key("ufoai:civilians/civfemscream01a.ogg") == key("ufoai:civilians/civfemscream02a.ogg")
    assert (
        key("ufoai:ambience/firesoft.ogg")
        == key("ufoai:ambience/smallfire.ogg")
        == key("ufoai:ambience/fire03.ogg")
    )
    assert key("ufoai:doors/open_close.ogg") == "ufoai:doors/open-close"  # nothing left: kept whole
    assert key("ufoai:soldiers/maledeath01.ogg") != key("ufoai:civilians/maledeath01.ogg")
    assert key("ufoai:soldiers/maledeath01.ogg") != key("ufoai:soldiers/malehurt01.ogg")


def test_max_ncc_finds_a_copy_inside_a_longer_take():
    rng = np.random.default_rng(0)
    a = rng.standard_normal(8000)  # 0.5 s at 16 kHz
    b = np.concatenate([rng.standard_normal(5000), 0.5 * a, rng.standard_normal(7000)])
    b[5000:13000] += 0.2 * rng.standard_normal(8000)
    prep = [sessions._prepare(x.astype(np.float32), sessions.DETECT_SR) for x in (a, b)]
    assert sessions._max_ncc(*prep) > 0.9
    c = sessions._prepare(rng.standard_normal(20000).astype(np.float32), sessions.DETECT_SR)
    assert sessions._max_ncc(prep[0], c) < 0.1
    rids = ["s:a1.ogg", "s:b.ogg", "s:a2.ogg", "s:c.ogg"]
    scores = np.eye(4)
    scores[1, 3] = scores[3, 1] = 0.95
    group_of, matches = sessions.recording_groups(rids, scores)
    assert group_of == {"s:a1.ogg": "s:a", "s:a2.ogg": "s:a", "s:b.ogg": "s:b", "s:c.ogg": "s:b"}
    assert matches == [("s:b.ogg", "s:c.ogg", 0.95)]


def test_the_default_build_splits_no_session_or_near_copy_across_splits():
    # the split assignment of the default build (its first use of the seed-0 generator), no scenes
    clips, audio = data.source_clips()
    rids = list(audio)
    scores = sessions.max_ncc(audio, data.SAMPLE_RATE)  # content-cached by the first build
    group_of, matches = data.source_groups(audio)
    split_of = data._assign_splits(clips, np.random.default_rng(0), group_of)
    part = np.array([split_of[r] for r in rids])
    cross = (part[:, None] != part[None, :]) & (scores > sessions.THRESHOLD)
    assert not cross.any(), [(rids[i], rids[j]) for i, j in zip(*np.nonzero(cross), strict=True)][:5]
    assert matches, "the detector found none of the known near-copies (linoleum = tile1)"
    by_key = {}
    for r in rids:
        by_key.setdefault(sessions.session_key(r), set()).add(split_of[r])
    assert all(len(v) == 1 for v in by_key.values())
    assert split_of["ufoai:weapons/bullet-smg-5x.ogg"] == split_of["ufoai:weapons/bullet-smg-15x.ogg"]
    assert split_of["ufoai:doors/door1-open.ogg"] == split_of["ufoai:doors/door1-close.ogg"]
    labels = {s: {c.label for c in clips if split_of[c.rid] == s} for s in data.SPLITS}
    assert labels["test"] <= labels["train"] and labels["val"] <= labels["train"]
    counts = {s: int((part == s).sum()) for s in data.SPLITS}
    assert 0.1 < counts["test"] / len(rids) < 0.3 and 0.08 < counts["val"] / len(rids) < 0.25


def test_too_few_recordings_to_split_stop_before_anything_is_written(tmp_path, monkeypatch):
    few = [c for c in sounds.scan_sources() if c.label == "steps_carpet" or c.rid.endswith("dog.mp3")]
    monkeypatch.setattr(data, "scan_sources", lambda: few)
    with pytest.raises(ValueError, match=r"give split\(s\) \['val', 'test'\] no group"):
        data.build_embedded_dataset("smoke", root=tmp_path / "ds", workers=1)
    assert list(tmp_path.iterdir()) == []


def test_the_benchmark_counts_test_scenes_sharing_a_train_group():
    import importlib.util

    from dlink import paths

    spec = importlib.util.spec_from_file_location("split_unit", paths.ROOT / "benchmarks" / "split_unit.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    import pandas as pd

    frames = {
        "train": pd.DataFrame({"recordings": ["u:door1-open.ogg;u:fire.ogg", "u:x.ogg"]}),
        "test": pd.DataFrame({"recordings": ["u:door1-close.ogg", "u:y.ogg", "u:z.ogg;u:y.ogg", "u:w.ogg"]}),
    }
    rids = ["u:door1-open.ogg", "u:fire.ogg", "u:x.ogg", "u:door1-close.ogg", "u:y.ogg", "u:z.ogg", "u:w.ogg"]
    scores = np.eye(len(rids))
    scores[2, 5] = scores[5, 2] = 0.99  # z is a copy of x
    group_of = sessions.recording_groups(rids, scores)[0]
    assert bench.shared_groups(frames, group_of) == 0.5  # door1-close and z: 2 of 4 test scenes


def test_scenes_captions_and_audio(smoke):
    a, _ = smoke
    df = data.load_split("train", size="smoke", root=a)
    assert set(df["composition"]) == {"single", "background", "sequence", "overlap"}
    for caps in df["captions"]:
        assert len(caps) == 5 and len(set(caps)) == 5 and all(len(c.split()) >= 2 for c in caps)
    assert df["duration"].between(5.0, 10.0).all()
    for row in df.head(8).itertuples():
        info = sf.info(row.audio)
        assert (info.samplerate, info.channels, info.subtype) == (32000, 1, "PCM_16")
        assert abs(info.duration - row.duration) < 1e-3
        x = data.load_audio(row.audio, 32000)
        assert 0.01 < np.abs(x).max() <= 0.96
    seq = df[df["composition"] == "sequence"].iloc[0]
    assert any(w in c for c in seq["captions"] for w in ("then", "followed by", "before"))
    onsets = [e["onset"] for e in seq["events"]]
    assert onsets == sorted(onsets)


def test_captions_follow_composition():
    rng = np.random.default_rng(0)
    scene = {
        "composition": "background",
        "items": [
            {"label": "fire", "role": "bg", "count": 1, "loudness": "normal"},
            {"label": "dog", "role": "fg", "count": 2, "loudness": "loud"},
        ],
    }
    caps = sounds.scene_captions(scene, rng)
    assert len(set(caps)) == 5
    assert all(("while" in c or " as " in c or "background" in c or "over" in c) for c in caps)
    assert all(("dog" in c) and ("fire" in c) for c in caps)


def test_load_audio_errors_and_conversions(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        data.load_audio(tmp_path / "nope.wav", 32000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    with pytest.raises(ValueError, match="bad.wav"):
        data.load_audio(bad, 32000)
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(ValueError, match="silent"):
        data.load_audio(tmp_path / "silent.wav", 32000)
    sf.write(tmp_path / "short.wav", np.full(800, 0.5, np.float32), 16000)  # 0.05 s
    with pytest.raises(ValueError, match="shorter"):
        data.load_audio(tmp_path / "short.wav", 32000)
    nan = np.full(16000, 0.1, np.float32)
    nan[5] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="NaN"):
        data.load_audio(tmp_path / "nan.wav", 32000)
    t = np.arange(44100) / 44100
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], 1).astype(np.float32)
    sf.write(tmp_path / "stereo.wav", stereo, 44100)
    x = data.load_audio(tmp_path / "stereo.wav", 32000)
    assert x.dtype == np.float32 and x.shape == (32000,)
    assert abs(np.abs(x).max() - 0.25) < 0.01  # mean of the two channels


def _write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _tone(path, seconds=1.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.3 * np.sin(np.linspace(0, 400 * np.pi, int(32000 * seconds))).astype(np.float32), 32000)


def test_audiocaps_loader_on_fixture(tmp_path, monkeypatch):
    monkeypatch.setattr(data.paths, "CACHE", tmp_path / "cache")  # load_split's audio checks
    base = tmp_path / "AUDIOCAPS"
    _write_csv(
        base / "csv_files_v1" / "train.csv",
        ["audiocap_id", "youtube_id", "start_time", "caption"],
        [[1, "abc", 30, "A dog barks"], [2, "xyz", 0, "Rain falls"], [3, "gone", 10, "Removed video"]],
    )
    caps = [[10 + i, "val1", 20, f"Caption {i}"] for i in range(5)]
    _write_csv(
        base / "csv_files_v1" / "val.csv", ["audiocap_id", "youtube_id", "start_time", "caption"], caps
    )
    _tone(base / "audio_32000Hz" / "train" / "abc_30.flac")
    _tone(base / "audio_32000Hz" / "train" / "xyz_0.flac")
    _tone(base / "audio_32000Hz" / "val" / "val1_20.flac")
    with pytest.warns(UserWarning, match="skipping 1 of 3 clips"):
        df = data.load_split("train", dataset="audiocaps", root=tmp_path, max_missing=0.5)
    assert list(df["id"]) == ["abc_30", "xyz_0"]  # the clip without audio is skipped, with a word
    assert df.attrs["skipped"][0]["id"] == "gone_10"
    assert list(df["captions"]) == [["A dog barks"], ["Rain falls"]]
    assert data.load_audio(df["audio"][0], 32000).shape == (32000,)
    val = data.load_split("val", dataset="audiocaps", root=tmp_path)
    assert len(val) == 1 and val["captions"][0] == [f"Caption {i}" for i in range(5)]
    with pytest.raises(FileNotFoundError, match="aac-datasets-download"):
        data.load_split("test", dataset="audiocaps", root=tmp_path)


def test_clotho_loader_on_fixture(tmp_path, monkeypatch):
    monkeypatch.setattr(data.paths, "CACHE", tmp_path / "cache")  # load_split's audio checks
    base = tmp_path / "CLOTHO_v2.1"
    header = ["file_name"] + [f"caption_{i}" for i in range(1, 6)]
    _write_csv(
        base / "clotho_csv_files" / "clotho_captions_evaluation.csv",
        header,
        [
            ["birds.wav"] + [f"birds sing {i}" for i in range(5)],
            ["car.wav"] + [f"a car passes {i}" for i in range(5)],
        ],
    )
    _tone(base / "clotho_audio_files" / "evaluation" / "birds.wav")
    _tone(base / "clotho_audio_files" / "evaluation" / "car.wav", 2.0)
    df = data.load_split("test", dataset="clotho", root=tmp_path)
    assert list(df["id"]) == ["birds.wav", "car.wav"] and all(len(c) == 5 for c in df["captions"])
    assert df["audio"][1].endswith("evaluation/car.wav")
    with pytest.raises(FileNotFoundError, match="clotho_captions_development.csv"):
        data.load_split("train", dataset="clotho", root=tmp_path)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split"):
        data.load_split("dev")
    with pytest.raises(ValueError, match="dataset"):
        data.load_split("train", dataset="esc50")
    with pytest.raises(ValueError, match="size"):
        data.build_embedded_dataset(size="huge")
    with pytest.raises(FileNotFoundError, match="python -m dlink.data build"):
        data.load_split("train", size="smoke", root=tmp_path / "empty")


def test_missing_source_package_names_install_command(monkeypatch, tmp_path):
    info = dict(sounds.SOURCE_INFO)
    info["wordwarvi"] = (str(tmp_path / "gone"), *info["wordwarvi"][1:])
    monkeypatch.setattr(sounds, "SOURCE_INFO", info)
    with pytest.raises(FileNotFoundError, match="apt-get install wordwarvi-sound"):
        sounds.scan_sources()


def test_build_refuses_a_folder_it_did_not_make(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    with pytest.raises(
        FileExistsError, match="refusing to replace .*mine: it has no .dlink-embedded-dataset"
    ):
        data.build_embedded_dataset("smoke", root=mine, workers=1)
    monkeypatch.chdir(mine)  # root="." would have wiped the working directory
    with pytest.raises(FileExistsError, match="refusing to replace"):
        data.build_embedded_dataset("smoke", root=".", force=True, workers=1)
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]
    assert [p.name for p in mine.iterdir()] == ["thesis.txt"]
    assert (mine / "thesis.txt").read_text() == "years of work"


def test_concurrent_builds_wait_for_each_other_and_both_get_a_complete_build(tmp_path, monkeypatch):
    root, rendered, results, errors = tmp_path / "ds", [], [], []
    real = data._render_write
    monkeypatch.setattr(data, "_render_write", lambda job: (rendered.append(job[1]), real(job)))

    def build():
        try:
            results.append(data.build_embedded_dataset("smoke", root=root, workers=1))
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == [root, root]
    assert data._is_complete(root)
    assert len(rendered) == sum(data.SIZES["smoke"])  # built once: the second caller reused it
    assert (root / ".dlink-embedded-dataset").is_file()
    # its own build is replaced on force=True, but not once a user has put a file inside it
    (root / "audio" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"audio/notes\.txt"):
        data.build_embedded_dataset("smoke", root=root, force=True, workers=1)
    assert (root / "audio" / "notes.txt").is_file()


def test_the_catalogue_tables_load_as_the_catalogue_the_datasets_were_built_from():
    # hashes of LABELS and RULES when they were Python literals in sounds.py (before the CSV files):
    # the same labels, words and rules in the same order, so builds stay byte-identical
    import hashlib

    assert len(sounds.LABELS) == 64
    assert hashlib.sha256(repr(sounds.LABELS).encode()).hexdigest().startswith("5fb1b9b8b84c0fad")
    assert hashlib.sha256(repr(sounds.RULES).encode()).hexdigest().startswith("6b408075447e1418")


def test_a_bad_catalogue_row_is_named(tmp_path, monkeypatch):
    import shutil

    for name in ("sounds.csv", "sound_rules.csv"):
        shutil.copy(sounds._HERE / name, tmp_path / name)
    monkeypatch.setattr(sounds, "_HERE", tmp_path)
    rules = (tmp_path / "sound_rules.csv").read_text()
    (tmp_path / "sound_rules.csv").write_text(
        rules.replace("ufoai,aliens/*,,scifi,", "ufoai,aliens/*,,alien,")
    )
    with pytest.raises(ValueError, match="sound_rules.csv line 3: drop must be one of"):
        sounds.load_rules()
    labels = (tmp_path / "sounds.csv").read_text()
    (tmp_path / "sounds.csv").write_text(labels.replace("cow,event,", "cow,noise,"))
    with pytest.raises(ValueError, match="sounds.csv line 3"):
        sounds.load_labels()


def test_force_rebuild_deletes_only_the_files_its_manifests_list(tmp_path):
    root = data.build_embedded_dataset("smoke", root=tmp_path / "ds", workers=1)
    # a user's recordings dropped into audio/: .wav files, one even named like a scene
    (root / "audio" / "my_field_recording.wav").write_bytes(b"RIFF user data")
    (root / "audio" / "train_99999.wav").write_bytes(b"RIFF user data")
    with pytest.raises(FileExistsError, match=r"audio/my_field_recording\.wav.*audio/train_99999\.wav"):
        data.build_embedded_dataset("smoke", root=root, force=True, workers=1)
    assert (root / "audio" / "my_field_recording.wav").read_bytes() == b"RIFF user data"
    assert (root / "audio" / "train_99999.wav").is_file() and data._is_complete(root) is False
    for name in ("my_field_recording.wav", "train_99999.wav"):
        (root / "audio" / name).unlink()
    assert data.build_embedded_dataset("smoke", root=root, force=True, workers=1) == root
    assert data._is_complete(root)


def test_split_summary_counts_scenes_labels_and_compositions():
    from dlink.data import split_summary

    frame = pd.DataFrame(
        {
            "labels": ["dog|rain", "dog", "car"],
            "duration": [5.0, 6.0, 7.0],
            "composition": ["sequence", "single", "sequence"],
        }
    )
    table = split_summary({"train": frame, "test": frame.iloc[:1]})
    assert list(table.index) == ["train", "test"]
    assert table.loc["train", "scenes"] == 3 and table.loc["train", "labels"] == 3
    assert table.loc["train", "mean duration (s)"] == 6.0
    assert table.loc["train", "sequence"] == 0.67 and table.loc["test", "labels"] == 2
