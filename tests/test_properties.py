"""Property-based tests (hypothesis) over the public calls: random shapes, dtypes and values give
either a ValueError with a message or a finite, correctly shaped result. Never NaN, never a crash
from deep inside a library."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dlink.bridges.baselines import BRIDGES, make_bridge

torch.set_num_threads(1)
FAST = {"epochs": 1, "batch_size": 8, "progress": False, "time_dim": 8, "n_blocks": 1}
SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# values that break naive code: NaN, inf, huge finite, tiny, zero, negative zero
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, -0.0, 1e-30, 3e38, -3e38, 1.0]),
)
dtypes = st.sampled_from([np.float32, np.float64, np.int64, np.bool_, np.float16])


@st.composite
def matrices(draw, n=None, d=None):
    n = draw(st.integers(0, 12)) if n is None else n
    d = draw(st.integers(0, 6)) if d is None else d
    dtype = draw(dtypes)
    if dtype is np.bool_:
        return draw(hnp.arrays(np.bool_, (n, d)))
    elems = st.integers(-5, 5) if dtype is np.int64 else values
    with np.errstate(over="ignore"):  # float64 -> float16 may overflow to inf: one more bad value
        return draw(hnp.arrays(np.float64, (n, d), elements=elems)).astype(dtype)


def _is_clear(e: ValueError) -> bool:
    return len(str(e)) > 10


@pytest.mark.parametrize("name", list(BRIDGES))
@SETTINGS
@given(data=st.data())
def test_every_bridge_fits_and_transforms_or_says_why(name, data):
    cfg = FAST if BRIDGES[name].learned else {}
    d = data.draw(st.integers(0, 6))
    audio, text = data.draw(matrices(d=d)), data.draw(matrices(d=d))
    if len(text) != len(audio) and data.draw(st.booleans()):
        text = text[: len(audio)] if len(text) > len(audio) else text
    query = data.draw(matrices(d=data.draw(st.sampled_from([d, d + 1]))))
    with np.errstate(all="ignore"):
        try:
            out = make_bridge(name, **cfg).fit(audio, text, device="cpu").transform(query)
        except ValueError as e:
            assert _is_clear(e), e
            return
    assert out.shape == query.shape and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert (np.linalg.norm(out, axis=1) <= 1 + 1e-4).all()


@SETTINGS
@given(a=matrices(), t=matrices(), paired=st.booleans())
def test_gap_report_is_finite_or_says_why(a, t, paired):
    from dlink.evaluation.gap import gap_report

    with np.errstate(all="ignore"):
        try:
            r = gap_report(a, t, paired=paired, max_points=50)
        except ValueError as e:
            assert _is_clear(e), e
            return
    assert all(isinstance(v, float) and not np.isinf(v) for v in r.values())
    assert np.isfinite(r["centroid_distance"]) and 0 <= r["separability"] <= 1


words = st.lists(
    st.sampled_from(["a", "dog", "barks", ".", ",", "!", "é", "\n", "\t", " ", ""]), max_size=8
).map(" ".join)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    preds=st.lists(st.one_of(words, st.integers(), st.none()), min_size=0, max_size=4),
    refs=st.lists(st.lists(words, min_size=0, max_size=3), min_size=0, max_size=4),
)
def test_caption_metrics_are_finite_or_say_why(preds, refs):
    from dlink.evaluation.metrics import caption_metrics

    try:
        m = caption_metrics(preds, refs)
    except ValueError as e:
        assert _is_clear(e), e
        return
    for key in ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D"):
        assert isinstance(m[key], float) and np.isfinite(m[key]) and m[key] >= 0, (key, m[key])


@SETTINGS
@given(
    samples=st.integers(0, 8000),
    channels=st.integers(1, 3),
    sr=st.sampled_from([8000, 16000, 22050, 32000, 48000]),
    kind=st.sampled_from(["noise", "silence", "nan", "loud"]),
    subtype=st.sampled_from(["PCM_16", "FLOAT"]),
)
def test_load_audio_returns_finite_mono_or_says_why(tmp_path_factory, samples, channels, sr, kind, subtype):
    import soundfile as sf

    from dlink.data import SAMPLE_RATE, load_audio

    rng = np.random.default_rng(samples)
    x = {
        "noise": 0.1 * rng.standard_normal((samples, channels)),
        "silence": np.zeros((samples, channels)),
        "nan": np.full((samples, channels), np.nan),
        "loud": 50.0 * rng.standard_normal((samples, channels)),
    }[kind]
    path = tmp_path_factory.mktemp("wav") / "x.wav"
    sf.write(path, x, sr, subtype=subtype)
    try:
        y = load_audio(path)
    except ValueError as e:
        assert _is_clear(e) and "x.wav" in str(e), e
        return
    assert y.ndim == 1 and y.dtype == np.float32 and np.isfinite(y).all()
    assert abs(len(y) - round(samples * SAMPLE_RATE / sr)) <= 2
