"""Bad inputs a new user might try, outside the bridges: each must fail at once with the right
exception type and a message naming the argument, field or file (never a deep library error).

Bridge configs and fit/transform are covered in tests/test_bridge.py and tests/test_baselines.py.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from dlink import data
from dlink._io import load_checkpoint, save_checkpoint
from dlink.captioning.captioner import CaptionerConfig, PrefixCaptioner, RetrievalCaptioner
from dlink.encoders.registry import load_encoder
from dlink.evaluation import gap, metrics, stats
from dlink.evaluation.plots import save_figure
from dlink.evaluation.tables import write_table
from dlink.profiles import resolve_params

RNG = np.random.default_rng(0)
A, T = RNG.standard_normal((20, 4)), RNG.standard_normal((20, 4))
X = RNG.standard_normal((4, 8)).astype(np.float32)
CAPS = ["a dog barks", "rain falls", "a car starts", "birds chirp"]
TINY = dict(batch_size=4, prefix_len=1, projector_hidden=8, scratch_width=8, scratch_layers=1,
            scratch_heads=1, vocab_min_count=1, epochs=1, max_new_tokens=3)  # fmt: skip


@pytest.fixture(scope="module")
def cap():
    return PrefixCaptioner(CaptionerConfig(**TINY), device="cpu").fit(X, CAPS, progress=False)


@pytest.fixture
def ck(tmp_path):
    """A valid checkpoint folder to damage."""
    return save_checkpoint(tmp_path / "ck", {"format": "x"}, {"w": torch.ones(3)})


# --------------------------------------------------------------- embeddings into public functions
EMBEDDINGS = {
    "gap_report: 1-D audio": (lambda: gap.gap_report(np.ones(5), T), "audio must be 2-D"),
    "gap_report: text of strings": (lambda: gap.gap_report(A, [["x"] * 4] * 20), "text must be a numeric"),
    "gap_report: inf in audio": (lambda: gap.gap_report(np.full((20, 4), np.inf), T), "audio has NaN/inf"),
    "gap_report: empty audio": (lambda: gap.gap_report(np.ones((0, 4)), T), "audio is empty"),
    "gap_report: too few rows": (lambda: gap.gap_report(A[:3], T[:3]), "audio has 3 rows"),
    "gap_report: dims differ": (lambda: gap.gap_report(A, np.ones((20, 5))), "embedding dim"),
    "knn_mixing: k=0": (lambda: gap.knn_mixing(A, T, k=0), "k must be"),
    "mmd2_rbf: bandwidth<0": (lambda: gap.mmd2_rbf(A, T, bandwidth=-1), "bandwidth"),
    "retrieval_recall: ks=(0,)": (lambda: gap.retrieval_recall(A, T, ks=(0,)), "ks must be"),
    "retrieval_recall: gallery_ids": (lambda: gap.retrieval_recall(A, T, gallery_ids=[1, 2]), "gallery_ids"),
    "bootstrap_ci: NaN scores": (lambda: stats.bootstrap_ci([np.nan, 1.0]), "NaN or inf"),
    "paired_relative_gain: lengths": (lambda: stats.paired_relative_gain([1, 2], [1, 2, 3]), "with_"),
    "relative_gain: NaN": (lambda: metrics.relative_gain(float("nan"), 1.0), "with_"),
    "relative_gain: without=0": (lambda: metrics.relative_gain(1.0, 0.0), "without"),
    "caption_metrics: str predictions": (
        lambda: metrics.caption_metrics("a dog", [["a dog"]]),
        "predictions",
    ),
    "caption_metrics: str references": (
        lambda: metrics.caption_metrics(["a"], ["a dog"]),
        r"references\[0\]",
    ),
    "caption_metrics: lengths": (lambda: metrics.caption_metrics(["a"], [["a"], ["b"]]), "references has 2"),
}

# --------------------------------------------------------------- captioner calls (need the fitted `cap`)
CAPTIONER = {
    "generate: beams=-1": (lambda c: c.generate(X, beams=-1, progress=False), "beams must be"),
    "generate: beams=True": (lambda c: c.generate(X, beams=True, progress=False), "beams must be"),
    "generate: beams=2.5": (lambda c: c.generate(X, beams=2.5, progress=False), "beams must be"),
    "generate: max_new_tokens=0": (lambda c: c.generate(X, max_new_tokens=0, progress=False), "max_new_tokens"),
    "generate: batch_size=-5": (lambda c: c.generate(X, batch_size=-5, progress=False), "batch_size"),
    "generate: 3-D embeddings": (lambda c: c.generate(X[None], progress=False), r"embeddings must be .*\(N, D\)"),
    "generate: 0 columns": (lambda c: c.generate(np.ones((2, 0)), progress=False), "embeddings is empty"),
    "generate: strings": (lambda c: c.generate([["a"] * 8] * 2, progress=False), "embeddings must be a numeric"),
    "generate: ragged rows": (lambda c: c.generate([[1.0, 2.0], [1.0]], progress=False), "embeddings must be"),
    "generate: complex": (lambda c: c.generate(X.astype(complex), progress=False), "dtype complex"),
    "generate: inf": (lambda c: c.generate(np.full((2, 8), np.inf), progress=False), "embeddings has NaN/inf in"),
    "generate: beyond float32": (lambda c: c.generate(np.full((2, 8), 1e300), progress=False), "float32"),
    "generate: wrong dim": (lambda c: c.generate(np.ones((2, 5)), progress=False), "dim 5"),
    "fit: too few captions": (lambda c: PrefixCaptioner(CaptionerConfig(**TINY)).fit(X, CAPS[:3]), "captions"),
    "fit: None caption": (lambda c: PrefixCaptioner(CaptionerConfig(**TINY)).fit(X, [*CAPS[:3], None]), r"captions\[3\]"),
    "untrained generate": (lambda c: PrefixCaptioner(CaptionerConfig(**TINY)).generate(X), "not trained"),
    "PrefixCaptioner(device='gpu0')": (lambda c: PrefixCaptioner(CaptionerConfig(**TINY), device="gpu0"), "device"),
    "retrieval: not fitted": (lambda c: RetrievalCaptioner().generate(X), "not fitted"),
    "retrieval: wrong dim": (lambda c: RetrievalCaptioner().fit(X, CAPS).generate(np.ones((1, 3))), "dim 3"),
}  # fmt: skip

# --------------------------------------------------------------- configs (not the bridges')
CONFIGS = {
    "prefix_len=0": ({"prefix_len": 0}, "prefix_len"),
    "epochs=1.5": ({"epochs": 1.5}, "epochs"),
    "batch_size='4'": ({"batch_size": "4"}, "batch_size"),
    "beams=-1": ({"beams": -1}, "beams"),
    "lr='0.1'": ({"lr": "0.1"}, "lr"),
    "lr=0": ({"lr": 0.0}, "lr"),
    "lr=nan": ({"lr": float("nan")}, "lr"),
    "noise_std<0": ({"noise_std": -0.1}, "noise_std"),
    "scratch_dropout=1": ({"scratch_dropout": 1.0}, "scratch_dropout"),
    "seed=2**70": ({"seed": 2**70}, "seed"),
    "seed=-1": ({"seed": -1}, "seed"),
    "width not a multiple of heads": ({"scratch_width": 10, "scratch_heads": 3}, "scratch_width"),
    "lora on scratch": ({"lora": True}, "lora"),
    "lm=None": ({"lm": None}, "lm"),
}

# --------------------------------------------------------------- notebook parameters
PARAMS = {
    "profile='huge'": ({"profile": "huge"}, "profile='huge'"),
    "dataset='esc50'": ({"dataset": "esc50"}, "dataset='esc50'"),
    "encoder='clip'": ({"encoder": "clip"}, "encoder='clip'"),
    "seeds=[]": ({"seeds": []}, "seeds must be"),
    "seeds='0,1'": ({"seeds": "0,1"}, "seeds must be"),
    "seeds=[True]": ({"seeds": [True]}, "seeds must be"),
    "seeds=[2**70]": ({"seeds": [2**70]}, r"seeds must be .*2\*\*32"),
    "seeds=[1, 1]": ({"seeds": [1, 1]}, "seeds has duplicates"),
    "device='gpu0'": ({"device": "gpu0"}, "device must be"),
    "unknown name": ({"n_epochs": 3}, "unknown parameter.*n_epochs"),
    "data_root with embedded": ({"data_root": "/tmp"}, "data_root is only used"),
    "audiocaps without data_root": ({"dataset": "audiocaps"}, "needs data_root"),
    "clap_ckpt with embedded": ({"clap_ckpt": "/tmp/x.pt"}, "clap_ckpt is only used"),
}


@pytest.mark.parametrize("case", list(EMBEDDINGS))
def test_embeddings(case):
    call, match = EMBEDDINGS[case]
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("case", list(CAPTIONER))
def test_captioner_calls(cap, case):
    call, match = CAPTIONER[case]
    with pytest.raises(ValueError, match=match):
        call(cap)


@pytest.mark.parametrize("case", list(CONFIGS))
def test_captioner_config(case):
    kwargs, match = CONFIGS[case]
    with pytest.raises(ValueError, match=f"CaptionerConfig.{match}"):
        CaptionerConfig(**kwargs)


@pytest.mark.parametrize("case", list(PARAMS))
def test_notebook_parameters(case):
    kwargs, match = PARAMS[case]
    with pytest.raises(ValueError, match=match):
        resolve_params(**{"profile": "smoke", **kwargs})


# --------------------------------------------------------------- checkpoints
def _damage(ck, how):
    w, c = ck / "model.safetensors", ck / "config.json"
    if how == "empty weights":
        w.write_bytes(b"")
    elif how == "truncated weights":
        w.write_bytes(w.read_bytes()[:-6])
    elif how == "a pickle as weights":
        w.write_bytes(pickle.dumps({"w": [1, 2, 3]}))
    elif how == "NaN weights":
        raw = bytearray(w.read_bytes())
        raw[-4:] = np.float32(np.nan).tobytes()
        w.write_bytes(bytes(raw))
    elif how == "config is a list":
        c.write_text("[1, 2]")
    elif how == "config not JSON":
        c.write_text("{'format': 1")
    elif how == "no config":
        c.unlink()
    elif how == "no weights":
        w.unlink()


CHECKPOINTS = {
    "empty weights": (ValueError, r"model\.safetensors is not a readable"),
    "truncated weights": (ValueError, r"model\.safetensors is not a readable"),
    "a pickle as weights": (ValueError, r"model\.safetensors is not a readable"),
    "NaN weights": (ValueError, r"model\.safetensors: tensor 'w'"),
    "config is a list": (ValueError, r"config\.json must hold a JSON object"),
    "config not JSON": (ValueError, r"config\.json is not valid JSON"),
    "no config": (FileNotFoundError, "has no config.json"),
    "no weights": (FileNotFoundError, "has no model.safetensors"),
}


@pytest.mark.parametrize("how", list(CHECKPOINTS))
def test_damaged_checkpoint(ck, how):
    _damage(ck, how)
    exc, match = CHECKPOINTS[how]
    with pytest.raises(exc, match=match):
        load_checkpoint(ck)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"format": "dlink.Bridge/1"}, "not a dlink.PrefixCaptioner/2 checkpoint"),
        ({"format": "dlink.PrefixCaptioner/2", "captioner": {}}, r"config\.json is malformed .*input_dim"),
        ({"format": "dlink.PrefixCaptioner/2", "input_dim": 8, "captioner": {"epochs": 0}}, "malformed"),
        ({"format": "dlink.PrefixCaptioner/2", "input_dim": 8, "captioner": {"colour": 1}}, "malformed"),
    ],
)
def test_captioner_checkpoint_with_a_bad_config(tmp_path, config, match):
    save_checkpoint(tmp_path / "ck", config, {"w": torch.ones(1)})
    with pytest.raises(ValueError, match=match):
        PrefixCaptioner.load(tmp_path / "ck", device="cpu")


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"best_epoch": 3}, "no 'config' key"),
        ({"config": {"dim": 8, "colour": 1}}, "not hold a consistent embedded-CLAP checkpoint"),
        ({"config": {"dim": 8}}, "not hold a consistent embedded-CLAP checkpoint"),  # tensors do not fit
    ],
)
def test_encoder_checkpoint_with_a_bad_config(tmp_path, config, match):
    save_checkpoint(tmp_path / "ck", config, {"w": torch.ones(1)})
    with pytest.raises(ValueError, match=match):
        load_encoder("embedded", checkpoint=tmp_path / "ck")


def test_saving_bad_tensors(tmp_path):
    with pytest.raises(ValueError, match="'w' .* meta device"):
        save_checkpoint(tmp_path / "a", {}, {"w": torch.empty(2, device="meta")})
    with pytest.raises(ValueError, match="'w' .* is a list"):
        save_checkpoint(tmp_path / "b", {}, {"w": [1.0, 2.0]})
    with pytest.raises(ValueError, match="unknown encoder 'clip'"):
        load_encoder("clip")
    with pytest.raises(ValueError, match="device must be"):
        load_encoder("embedded", checkpoint=tmp_path, device="gpu0")


# --------------------------------------------------------------- audio files
def _audio(path, how):
    sr = 32000
    if how == "missing":
        return path / "nope.wav"
    if how == "a folder":
        return path
    f = path / "clip.wav"
    if how == "empty file":
        f.write_bytes(b"")
    elif how == "text named .wav":
        f.write_text("not audio at all")
    elif how == "truncated header":
        sf.write(f, np.sin(np.arange(sr) / 10).astype(np.float32), sr)
        f.write_bytes(f.read_bytes()[:20])
    elif how == "NaN samples":
        x = np.sin(np.arange(sr) / 10).astype(np.float32)
        x[100] = np.nan
        sf.write(f, x, sr, subtype="FLOAT")
    elif how == "silent":
        sf.write(f, np.zeros(sr, np.float32), sr)
    elif how == "too short":
        sf.write(f, np.ones(100, np.float32) * 0.5, sr)
    return f


AUDIO = {
    "missing": (FileNotFoundError, "nope.wav does not exist"),
    "a folder": (FileNotFoundError, "does not exist"),
    "empty file": (ValueError, "cannot decode audio file .*clip.wav"),
    "text named .wav": (ValueError, "cannot decode audio file .*clip.wav"),
    "truncated header": (ValueError, "cannot decode audio file .*clip.wav"),
    "NaN samples": (ValueError, "clip.wav contains NaN"),
    "silent": (ValueError, "clip.wav is silent"),
    "too short": (ValueError, "clip.wav is 0.003 s long"),
}


@pytest.mark.parametrize("how", list(AUDIO))
def test_audio_files(tmp_path, how):
    exc, match = AUDIO[how]
    with pytest.raises(exc, match=match):
        data.load_audio(_audio(tmp_path, how))


# --------------------------------------------------------------- dataset folders and outputs
def test_dataset_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete embedded dataset in .*empty"):
        data.load_split("train", size="smoke", root=tmp_path / "empty")
    half = tmp_path / "half"
    (half / "audio").mkdir(parents=True)
    (half / "build.json").write_text("{not json")
    with pytest.raises(FileNotFoundError, match="no complete embedded dataset in .*half"):
        data.load_split("train", size="smoke", root=half)
    with pytest.raises(ValueError, match="split='dev'"):
        data.load_split("dev", size="smoke", root=half)
    with pytest.raises(ValueError, match="size='huge'"):
        data.build_embedded_dataset("huge", root=tmp_path / "x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="file exists and is not a folder"):
        data.build_embedded_dataset("smoke", root=tmp_path / "file")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("x")
    with pytest.raises(FileExistsError, match="refusing to replace .*mine"):
        data.build_embedded_dataset("smoke", root=tmp_path / "mine")


def test_output_names(tmp_path):
    from matplotlib.figure import Figure

    rows = [{"method": "a", "seed": 0, "x": 1.0}]
    with pytest.raises(ValueError, match="stem='../../../x'"):
        write_table(rows, "../../../x")
    with pytest.raises(ValueError, match="rows is empty"):
        write_table([], tmp_path / "t")
    with pytest.raises(ValueError, match="stem='../fig'"):
        save_figure(Figure(), "../fig")
    with pytest.raises(ValueError, match="stem must be"):
        save_figure(Figure(), None)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------- seeded fuzzing (hypothesis is not a dependency)
def _random_array(rng):
    shape = tuple(int(n) for n in rng.integers(0, 5, size=rng.integers(0, 4)))
    dtype = rng.choice(["float16", "float32", "float64", "int8", "int64", "bool", "complex64"])
    x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-40, 40)
    if x.size and rng.random() < 0.3:
        x.flat[rng.integers(x.size)] = rng.choice([np.nan, np.inf, -np.inf, 0.0])
    with np.errstate(all="ignore"):
        return x.astype(dtype)


def test_fuzzed_embeddings_give_a_clear_error_or_a_finite_result(cap):
    """Random shapes, dtypes and magnitudes: a ValueError with a message, or one caption per row."""
    rng = np.random.default_rng(13)
    retrieval = RetrievalCaptioner().fit(X, CAPS)
    for _ in range(60):
        x = _random_array(rng)
        if x.ndim == 2 and x.shape[1] == 8 and rng.random() < 0.5:
            x = x[:, :8]
        for model in (cap, retrieval):
            try:
                out = model.generate(x, progress=False)
            except ValueError as e:
                assert "embeddings" in str(e)
            else:
                assert (
                    isinstance(out, list) and len(out) == x.shape[0] and all(isinstance(s, str) for s in out)
                )


def test_fuzzed_unit_rows_are_unit_or_zero():
    from dlink.encoders.registry import l2_normalize

    rng = np.random.default_rng(5)
    for _ in range(200):
        x = (rng.standard_normal((3, 6)) * 10.0 ** rng.uniform(-44, 38, size=(3, 1))).astype(np.float32)
        x[rng.random(3) < 0.2] = 0
        u = l2_normalize(x)
        norms = np.linalg.norm(u.astype(np.float64), axis=1)
        assert np.isfinite(u).all()
        assert np.allclose(norms[x.any(1)], 1, atol=1e-5) and not u[~x.any(1)].any()


def test_fuzzed_audio_files_give_a_clear_error_or_a_finite_waveform(tmp_path):
    rng = np.random.default_rng(7)
    for i in range(25):
        f = tmp_path / f"{i}.wav"
        sr = int(rng.choice([8000, 16000, 22050, 44100, 48000]))
        x = rng.standard_normal((int(rng.integers(0, sr)), int(rng.integers(1, 4)))) * 10.0 ** rng.uniform(
            -8, 1
        )
        if x.size and rng.random() < 0.3:
            x.flat[rng.integers(x.size)] = np.nan
        sf.write(f, x.astype(np.float32), sr, subtype=str(rng.choice(["PCM_16", "FLOAT"])))
        if rng.random() < 0.3:
            f.write_bytes(f.read_bytes()[: int(rng.integers(0, 200))])
        try:
            y = data.load_audio(f)
        except ValueError as e:
            assert f.name in str(e)
        else:
            assert y.ndim == 1 and y.dtype == np.float32 and np.isfinite(y).all() and len(y) >= 3200
