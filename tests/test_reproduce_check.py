"""scripts/reproduce_check.py on small tables shaped like the run's: exact where the run is
deterministic, within the stated tolerance for bootstrap intervals and gains, readable output."""

from __future__ import annotations

import runpy
import shutil

import pytest

from dlink import paths

CSV = """decoder,method,n_seeds,CIDEr-D_mean,CIDEr-D_std,cider_lo,cider_hi,gain,gain_lo,gain_hi
generative,identity,3,0.6671885926838411,0.03308167877456502,0.5826924017047639,0.7572934423894,,,
generative,diffusion_link,3,0.7491,0.0,0.660,0.844,0.123,0.030,0.221
"""
MD = """# AAC, zero-shot

| decoder | method | CIDEr-D | CIDEr-D [95 % CI] | gain [95 % CI] |
| --- | --- | ---: | ---: | ---: |
| generative | identity | 0.667 ± 0.033 | 0.667 [0.583, 0.757] |  |
| generative | diffusion_link | 0.749 ± 0.007 | 0.749 [0.660, 0.844] | +12.3 % [+3.0, +22.1] |

Relative CIDEr-D gain of Diffusion-Link over no bridge: **+12.3 %** [+3.0, +22.1].
"""
SAMPLES = """# Generated captions: aac_zero_shot

| method | caption |
| --- | --- |
| diffusion_link | a dog barks twice as rain falls |
"""
JSON = '{"R@1": 0.20333333333333334, "encoder": "embedded", "test_items": 300}'


@pytest.fixture
def check():
    return runpy.run_path(str(paths.ROOT / "scripts" / "reproduce_check.py"))


@pytest.fixture
def folders(tmp_path):
    committed, fresh = tmp_path / "committed", tmp_path / "fresh"
    for d in (committed, fresh):
        d.mkdir()
        (d / "aac_zero_shot.csv").write_text(CSV)
        (d / "aac_zero_shot.md").write_text(MD)
        (d / "aac_zero_shot_samples.md").write_text(SAMPLES)
        (d / "encoder_gap.json").write_text(JSON)
    (committed / "decoder_comparison.md").write_text("| fit s |\n| --- |\n| 60.3 |\n")  # a benchmark's
    return committed, fresh


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_identical_and_round_off_and_small_interval_moves_pass(check, folders, capsys):
    committed, fresh = folders
    assert check["main"]([str(fresh), "--committed", str(committed)]) == 0
    _edit(fresh / "aac_zero_shot.csv", ",0.0,0.660,", ",3.3993498887762956e-17,0.660,")  # float round-off
    _edit(fresh / "aac_zero_shot.csv", "0.660,0.844,0.123,0.030,0.221", "0.664,0.838,0.127,0.026,0.225")
    _edit(
        fresh / "aac_zero_shot.md",
        "0.749 [0.660, 0.844] | +12.3 % [+3.0, +22.1]",
        "0.749 [0.664, 0.838] | +12.7 % [+2.6, +22.5]",
    )
    _edit(fresh / "aac_zero_shot.md", "**+12.3 %** [+3.0, +22.1]", "**+12.7 %** [+2.6, +22.5]")
    _edit(fresh / "encoder_gap.json", "0.20333333333333334", "0.20333333333333337")
    assert check["main"]([str(fresh), "--committed", str(committed)]) == 0
    assert "reproduces" in capsys.readouterr().out


def test_deterministic_numbers_must_match_exactly(check, folders, capsys):
    committed, fresh = folders
    _edit(fresh / "aac_zero_shot.csv", "0.7491,", "0.7502,")
    _edit(fresh / "aac_zero_shot.md", "0.749 ± 0.007", "0.750 ± 0.007")
    _edit(fresh / "encoder_gap.json", '"test_items": 300', '"test_items": 299')
    assert check["main"]([str(fresh), "--committed", str(committed)]) == 1
    out = capsys.readouterr().out
    assert (
        "row 'generative diffusion_link', CIDEr-D_mean: committed 0.7491, fresh 0.7502 (must be exact)" in out
    )
    assert (
        "line 6 (generative diffusion_link), CIDEr-D: committed '0.749 ± 0.007', fresh '0.750 ± 0.007'" in out
    )
    assert "/test_items: committed 300, fresh 299 (must be exact)" in out
    assert "3 difference(s)" in out and "not reproduced" in out


def test_intervals_and_gains_beyond_tolerance_and_changed_text_fail(check, folders, capsys):
    committed, fresh = folders
    _edit(fresh / "aac_zero_shot.csv", "0.123,0.030,0.221", "0.145,0.030,0.221")  # gain +2.2 points
    _edit(fresh / "aac_zero_shot.md", "+12.3 % [+3.0, +22.1] |", "+14.5 % [+3.0, +22.1] |")
    _edit(fresh / "aac_zero_shot_samples.md", "barks twice", "barks once")
    (fresh / "encoder_gap.json").unlink()
    assert check["main"]([str(fresh), "--committed", str(committed)]) == 1
    out = capsys.readouterr().out
    assert "gain: committed 0.123, fresh 0.145 (tolerance 0.01: relative gain" in out
    assert (
        "gain [95 % CI]: committed '+12.3 % [+3.0, +22.1]', fresh '+14.5 % [+3.0, +22.1]' (off by 2.2" in out
    )
    assert "'a dog barks twice as rain falls', fresh 'a dog barks once as rain falls' (must be exact)" in out
    assert "encoder_gap.json: committed but not written by the fresh run" in out
    assert "decoder_comparison" not in out  # a benchmark's output, not the run's


def test_committed_results_agree_with_themselves_and_usage_errors(check, tmp_path, capsys):
    copy = tmp_path / "results"
    shutil.copytree(paths.RESULTS, copy, ignore=shutil.ignore_patterns("smoke", "full"))
    assert check["main"]([str(copy)]) == 0
    assert check["main"]([str(tmp_path / "nowhere")]) == 2
    with pytest.raises(SystemExit):
        check["main"]([])  # neither a folder nor --run
