"""benchmarks/compare_decoders.py: scoring each epoch leaves training as it was; the curve's pick."""

import importlib.util

import numpy as np
import pytest

from dlink import paths
from dlink.captioning.captioner import CaptionerConfig, PrefixCaptioner

CAPTIONS = ["A dog barks loudly", "Rain falls on a roof", "A car engine starts and idles", "Birds chirp"]
SCRATCH = dict(
    lm="scratch", batch_size=2, lr=3e-3, prefix_len=2, projector_hidden=32, scratch_width=32,
    scratch_layers=1, scratch_heads=2, scratch_dropout=0.3, vocab_min_count=1, max_new_tokens=8, beams=2,
)  # fmt: skip


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "compare_decoders", paths.ROOT / "benchmarks" / "compare_decoders.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scoring_each_epoch_leaves_training_unchanged(bench):
    x = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    cfg = CaptionerConfig(epochs=3, **SCRATCH)  # dropout on: training draws from torch's random state
    val = (x[:2], CAPTIONS[:2])
    plain = PrefixCaptioner(cfg, device="cpu").fit(x, CAPTIONS, val=val, progress=False)
    inputs = {"oracle": x, "no bridge": x[::-1].copy()}
    scored = bench._scored_captioner()(cfg, "cpu", inputs, [[c] for c in CAPTIONS])
    scored.fit(x, CAPTIONS, val=val, progress=False)
    # equal losses also mean dropout was back on after each epoch's (eval-mode) decoding
    assert scored.history == plain.history
    assert [r["epoch"] for r in scored.curve] == [1, 2, 3]
    assert all(len(r["oracle items"]) == 4 and r["no bridge"] >= 0 for r in scored.curve)
    assert scored.generate(x, progress=False) == plain.generate(x, progress=False)


def test_the_curve_picks_the_best_mean_epoch_and_pairs_it_with_the_default(bench):
    rng = np.random.default_rng(0)

    def row(epoch, level):
        items = list(level + 0.01 * rng.standard_normal(6))
        return {"epoch": epoch, "val_loss": 1.0, "oracle": float(np.mean(items)), "oracle items": items,
                "no bridge": 0.5, "no bridge items": [0.5] * 6}  # fmt: skip

    curves = {s: [row(1, 0.2), row(2, 0.5 + 0.01 * s), row(3, 0.4)] for s in (0, 1, 2)}
    summary = bench.summarize_curve(curves, default_epochs=3)
    pick = summary["picks"]["oracle"]
    assert pick["epoch"] == 2 and pick["versus_epoch"] == 3
    assert 0.05 < pick["lo"] <= pick["difference"] <= pick["hi"] < 0.15
    assert len(pick["per_seed_difference"]) == 3
    assert summary["epochs"][1]["oracle"]["min"] < summary["epochs"][1]["oracle"]["max"]
    lines = bench.curve_markdown(summary, 3, 3)
    assert any("validation picks epoch 2" in line for line in lines)


@pytest.mark.parametrize(
    "argv, field",
    [
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--set", "lora=maybe"], "--set: lora='maybe': expected true or false"),
        (["--set", "batch_size=0"], "--set: CaptionerConfig.batch_size=0 must be an int >= 1"),
        (["--set", "depth=3"], "--set: 'depth=3' is not FIELD=VALUE"),
        (["--name", "../x"], "--name must be letters"),
    ],
)
def test_llm_curve_names_a_bad_argument_before_loading_anything(argv, field, capsys):
    spec = importlib.util.spec_from_file_location("llm_curve", paths.ROOT / "benchmarks" / "llm_curve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as stop:
        module.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and field in err, err
