"""AudioCaps (v1, v2, older flat layout) and Clotho folders as aac-datasets writes them; bad input."""

from __future__ import annotations

import paper_fixtures as F
import pytest

from dlink import data


@pytest.mark.parametrize("layout", ["v1", "v2", "flat"])
def test_audiocaps_layouts_read_alike(tmp_path, layout):
    F.make_audiocaps(tmp_path, layout=layout, counts=(3, 2, 2), seconds=0.2)
    train = data.load_split("train", dataset="audiocaps", root=tmp_path)
    test = data.load_split("test", dataset="audiocaps", root=tmp_path)
    assert len(train) == 3 and all(len(c) == 1 for c in train["captions"])
    assert len(test) == 2 and all(len(c) == 5 for c in test["captions"])
    assert test["id"].iat[1] == f"te{layout}Yt001_40" and test["audio"].iat[1].endswith(
        "te" + layout + "Yt001_40.flac"
    )


def test_audiocaps_train_clips_keep_the_same_caption_count(tmp_path):
    F.make_audiocaps(tmp_path, counts=(3, 2, 2), seconds=0.2)
    csv = tmp_path / "AUDIOCAPS" / "csv_files_v1" / "train.csv"
    first = csv.read_text().splitlines()[1].split(",")
    csv.write_text(csv.read_text() + f"999,{first[1]},{first[2]},A second caption for clip zero\n")
    train = data.load_split("train", dataset="audiocaps", root=tmp_path)
    assert [len(c) for c in train["captions"]] == [1, 1, 1] and train["captions"].iat[0][
        0
    ] != "A second caption"


def test_audiocaps_bad_csvs_name_the_file(tmp_path):
    F.make_audiocaps(tmp_path, counts=(2, 2, 2), seconds=0.2)
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
    F.make_clotho(tmp_path, counts=(2, 2, 3), seconds=0.2)
    test = data.load_split("test", dataset="clotho", root=tmp_path)
    assert list(test["id"]) == [f"evaluation clip {i:02d}.wav" for i in range(3)]
    assert all(len(c) == 5 for c in test["captions"])
