"""scripts/reproduce_check.py on small tables shaped like the run's: every headline of each run inside
the other's interval, exact where the run is deterministic, the structure elsewhere, readable output."""

from __future__ import annotations

import runpy
import shutil

import pytest

from dlink import paths

CSV = """decoder,method,n_seeds,CIDEr-D_mean,CIDEr-D_std,cider_lo,cider_hi,gain,gain_lo,gain_hi,d_CIDEr-D,d_CIDEr-D_lo,d_CIDEr-D_hi,d_CIDEr-D_resolved
generative,identity,3,0.6671885926838411,0.03308167877456502,0.5826924017047639,0.7572934423894,,,,-0.082,-0.15,-0.01,True
generative,diffusion_link,3,0.7491,0.0,0.660,0.844,0.123,0.030,0.221,,,,
"""
MD = """# AAC, zero-shot

| decoder | method | CIDEr-D | CIDEr-D [95 % CI] | gain [95 % CI] | minus diffusion_link [95 % CI] |
| --- | --- | ---: | ---: | ---: | ---: |
| generative | identity | 0.667 ± 0.033 | 0.667 [0.583, 0.757] |  | -0.082 [-0.150, -0.010] (resolved) |
| generative | diffusion_link | 0.749 ± 0.007 | 0.749 [0.660, 0.844] | +12.3 % [+3.0, +22.1] |  |
"""
GAP = """method,n_seeds,n_items,centroid_distance,centroid_distance_lo,centroid_distance_hi,d_centroid_distance,d_centroid_distance_lo,d_centroid_distance_hi
identity,3,300,0.234,0.200,0.260,0.055,0.030,0.080
diffusion_link,3,300,0.179,0.150,0.210,0.0,0.0,0.0
"""
FIT = "| what | trained on |\n| --- | --- |\n| bridges | 1500 fit scenes |\n"
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
        (d / "items").mkdir(parents=True)
        (d / "aac_zero_shot.csv").write_text(CSV)
        (d / "aac_zero_shot.md").write_text(MD)
        (d / "gap_intervals.csv").write_text(GAP)
        (d / "fit_split.md").write_text(FIT)
        (d / "aac_zero_shot_samples.md").write_text(SAMPLES)
        (d / "encoder_gap.json").write_text(JSON)
        (d / "items" / "aac_zero_shot.csv.gz").write_bytes(b"")
    (committed / "decoder_comparison.md").write_text("| fit s |\n| --- |\n| 60.3 |\n")  # a benchmark's
    return committed, fresh


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_rerun_inside_each_others_intervals_passes(check, folders, capsys):
    committed, fresh = folders
    assert check["main"]([str(fresh), "--committed", str(committed)]) == 0
    # another thread count: every number moves, each headline stays inside the other run's interval
    _edit(
        fresh / "aac_zero_shot.csv",
        "0.7491,0.0,0.660,0.844,0.123,0.030,0.221",
        "0.7102,0.02,0.640,0.801,0.081,0.010,0.160",
    )
    _edit(fresh / "aac_zero_shot.csv", "-0.082,-0.15,-0.01,True", "-0.04,-0.10,0.02,False")
    _edit(fresh / "aac_zero_shot.md", "0.749 ± 0.007 | 0.749 [0.660, 0.844] | +12.3 % [+3.0, +22.1]",
          "0.710 ± 0.020 | 0.710 [0.640, 0.801] | +8.1 % [+1.0, +16.0]")  # fmt: skip
    _edit(fresh / "aac_zero_shot.md", "-0.082 [-0.150, -0.010] (resolved)", "-0.040 [-0.100, +0.020]")
    _edit(
        fresh / "gap_intervals.csv",
        "0.234,0.200,0.260,0.055,0.030,0.080",
        "0.250,0.215,0.281,0.070,0.045,0.090",
    )
    _edit(fresh / "aac_zero_shot_samples.md", "barks twice", "barks once")
    _edit(fresh / "encoder_gap.json", "0.20333333333333334", "0.19")
    assert check["main"]([str(fresh), "--committed", str(committed)]) == 0
    assert "reproduces" in capsys.readouterr().out


def test_a_headline_outside_the_other_runs_interval_fails_either_way(check, folders, capsys):
    committed, fresh = folders
    _edit(fresh / "aac_zero_shot.csv", "0.123,0.030,0.221", "0.260,0.200,0.320")  # gain far above
    _edit(fresh / "gap_intervals.csv", "0.179,0.150,0.210", "0.179,0.178,0.180")  # a narrow fresh interval
    assert check["main"]([str(fresh), "--committed", str(committed)]) == 1
    out = capsys.readouterr().out
    assert (
        "row 'generative diffusion_link', gain: committed 0.123 outside the fresh run's interval [0.200, 0.320]"
        in out
    )
    assert (
        "row 'generative diffusion_link', gain: fresh 0.260 outside the committed interval [0.030, 0.221]"
        in out
    )
    assert "row 'diffusion_link', centroid_distance: committed 0.179 outside" not in out  # 0.179 is inside
    assert "not reproduced" in out
    _edit(fresh / "gap_intervals.csv", "0.179,0.178,0.180", "0.190,0.185,0.195")
    assert check["main"]([str(fresh), "--committed", str(committed)]) == 1
    assert (
        "row 'diffusion_link', centroid_distance: committed 0.179 outside the fresh run's interval"
        in capsys.readouterr().out
    )


def test_deterministic_parts_and_structure_must_match(check, folders, capsys):
    committed, fresh = folders
    _edit(fresh / "fit_split.md", "1500 fit", "1499 fit")  # the splits are deterministic
    _edit(fresh / "gap_intervals.csv", "identity,3,300", "identity,3,299")
    _edit(fresh / "aac_zero_shot.md", "# AAC, zero-shot", "# AAC")
    (fresh / "encoder_gap.json").write_text(JSON.replace('"encoder": "embedded"', '"encoder": "laion"'))
    (fresh / "items" / "aac_zero_shot.csv.gz").unlink()
    assert check["main"]([str(fresh), "--committed", str(committed)]) == 1
    out = capsys.readouterr().out
    assert (
        "line 3: committed '| bridges | 1500 fit scenes |', fresh '| bridges | 1499 fit scenes |' (must be exact)"
        in out
    )
    assert "row 'identity', n_items: committed 300, fresh 299 (must be exact)" in out
    assert "line 1: committed '# AAC, zero-shot', fresh '# AAC' (the text differs" in out
    assert "/encoder: committed 'embedded', fresh 'laion'" in out
    assert "items/aac_zero_shot.csv.gz: committed but not written by the fresh run" in out
    assert "decoder_comparison" not in out  # a benchmark's output, not the run's
    assert "5 difference(s)" in out


def test_a_missing_statistic_and_columns(check, folders, capsys):
    committed, fresh = folders
    _edit(
        fresh / "aac_zero_shot.csv", "0.7491,0.0,0.660,0.844,0.123,0.030,0.221", "0.7491,0.0,0.660,0.844,,,"
    )
    (fresh / "gap_intervals.csv").write_text(GAP.replace("n_items,", "items,"))
    assert check["main"]([str(fresh), "--committed", str(committed)]) == 1
    out = capsys.readouterr().out
    assert "gain: committed 0.123 outside the fresh run's interval [, ]" in out
    assert "gap_intervals.csv: 1 difference(s)" in out and "columns differ" in out


def test_committed_results_agree_with_themselves_and_usage_errors(check, tmp_path, capsys):
    copy = tmp_path / "results"
    shutil.copytree(paths.RESULTS, copy, ignore=shutil.ignore_patterns("smoke", "full"))
    assert check["main"]([str(copy)]) == 0
    assert check["main"]([str(tmp_path / "nowhere")]) == 2
    with pytest.raises(SystemExit):
        check["main"]([])  # neither a folder nor --run


def test_generated_captions_may_differ_but_not_their_rows(check, folders, capsys):
    committed, fresh = folders
    rows = "id,generative:diffusion_link\ntest_00000,a dog barks\ntest_00001,rain falls\n"
    (committed / "aac_zero_shot_samples.csv").write_text(rows)
    (fresh / "aac_zero_shot_samples.csv").write_text(rows.replace("a dog barks", "a dog barks twice"))
    assert check["main"]([str(fresh), "--committed", str(committed)]) == 0
    (fresh / "aac_zero_shot_samples.csv").write_text(rows.rsplit("test_00001", 1)[0])
    assert check["main"]([str(fresh), "--committed", str(committed)]) == 1
    assert "2 rows committed, 1 fresh" in capsys.readouterr().out
