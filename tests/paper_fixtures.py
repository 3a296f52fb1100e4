"""Faithful stand-ins for the paper's inputs, generated in a test: a LAION-CLAP training checkpoint
(HTSAT + roberta from random configs, saved in the layout LAION-CLAP's training script writes), a
roberta-style BPE tokenizer folder, and AudioCaps / Clotho folders in the aac-datasets layouts.

Nothing here downloads anything; sizes are tiny so the paper-setting pipeline test stays fast.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

WORDS = ("a dog barks while rain falls on a roof and a man speaks near a running engine "
         "birds chirp in the distance as wind blows water flows a car passes by people talk").split()  # fmt: skip
SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # roberta's ids 0..4 (pad = 1)


def make_roberta_tokenizer(folder: Path, vocab_size: int = 400) -> int:
    """A byte-level BPE tokenizer folder (vocab.json + merges.txt) like roberta-base's; returns its size."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(WORDS)] * 20, vocab_size=vocab_size, special_tokens=SPECIAL)
    bpe.save_model(str(folder))
    return len(RobertaTokenizer.from_pretrained(str(folder)))


def caption(rng: np.random.Generator, n_words: int = 6) -> str:
    return " ".join(rng.choice(WORDS, size=n_words)).capitalize()


def make_laion_checkpoint(
    path: Path,
    vocab_size: int,
    amodel: str = "HTSAT-tiny",
    fusion: bool = False,
    position_ids: bool = True,
    seed: int = 0,
) -> dict:
    """A random HTSAT + 1-layer roberta CLAP saved as LAION-CLAP's training script saves it.

    Layout (LAION-AI/CLAP src/laion_clap/training/main.py): {"epoch", "name", "state_dict" (DDP:
    "module." prefixes), "optimizer" (whose lr is a numpy.float64 from cosine_lr), "scaler"};
    `position_ids=True` adds the buffer older transformers saved. Returns the bare state_dict.
    """
    import torch

    from dlink.encoders.laion import build_clap

    tower = dict(vocab_size=vocab_size, num_hidden_layers=1, intermediate_size=256)
    model, _ = build_clap(amodel, "roberta", seed=seed, enable_fusion=fusion, tower=tower)
    sd = model.state_dict()
    full = dict(sd)
    if position_ids:
        full["text_branch.embeddings.position_ids"] = torch.arange(514)[None]
    first = next(iter(sd))
    torch.save(
        {
            "epoch": 45,
            "name": "2022_11_28-fixture-model_HTSAT-tiny",
            "state_dict": {f"module.{k}": v for k, v in full.items()},
            "optimizer": {
                "state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(sd[first])}},
                "param_groups": [
                    {
                        "lr": np.float64(1e-4) * np.cos(0.3),
                        "betas": (0.9, 0.99),
                        "eps": 1e-9,
                        "weight_decay": 0.0,
                        "amsgrad": False,
                        "params": [0],
                    }
                ],  # fmt: skip
            },
            "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 10},
        },
        path,
    )
    return sd


def _tone(path: Path, seconds: float, sr: int, freq: float) -> None:
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)


def make_audiocaps(root: Path, layout: str = "v1", counts=(16, 10, 12), seconds: float = 1.0) -> Path:
    """AudioCaps as aac-datasets 0.7.0 lays it out under `root`.

    layout "v1": AUDIOCAPS/csv_files_v1/{train,val,test}.csv; "v2": AUDIOCAPS/csv_files_v2/*.csv
    (AudioCaps 2.0); "flat": AUDIOCAPS/{train,val,test}.csv (older aac-datasets). Columns
    audiocap_id, youtube_id, start_time, caption: 1 row per train clip, 5 per val/test clip;
    audio AUDIOCAPS/audio_32000Hz/<split>/<youtube_id>_<start_time>.flac.
    """
    rng = np.random.default_rng(0)
    base = root / "AUDIOCAPS"
    csv_dir = {"v1": base / "csv_files_v1", "v2": base / "csv_files_v2", "flat": base}[layout]
    csv_dir.mkdir(parents=True, exist_ok=True)
    cap_id = 100
    for split, n in zip(("train", "val", "test"), counts, strict=True):
        audio = base / "audio_32000Hz" / split
        audio.mkdir(parents=True, exist_ok=True)
        with open(csv_dir / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
            for i in range(n):
                yid, start = f"{split[:2]}{layout}Yt{i:03d}", 10 * i + 30
                _tone(audio / f"{yid}_{start}.flac", seconds, 32000, 200 + 40 * i)
                for _ in range(1 if split == "train" else 5):
                    cap_id += 1
                    w.writerow([cap_id, yid, start, caption(rng)])
    return root


def make_clotho(root: Path, counts=(16, 10, 12), seconds: float = 1.0) -> Path:
    """Clotho v2.1 as aac-datasets lays it out: CLOTHO_v2.1/clotho_csv_files/clotho_captions_<subset>.csv
    (file_name, caption_1..caption_5) and CLOTHO_v2.1/clotho_audio_files/<subset>/<file_name>."""
    rng = np.random.default_rng(1)
    base = root / "CLOTHO_v2.1"
    (base / "clotho_csv_files").mkdir(parents=True, exist_ok=True)
    for subset, n in zip(("development", "validation", "evaluation"), counts, strict=True):
        audio = base / "clotho_audio_files" / subset
        audio.mkdir(parents=True, exist_ok=True)
        with open(base / "clotho_csv_files" / f"clotho_captions_{subset}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file_name", *[f"caption_{k}" for k in range(1, 6)]])
            for i in range(n):
                name = f"{subset} clip {i:02d}.wav"  # Clotho file names hold spaces
                _tone(audio / name, seconds, 44100, 300 + 50 * i)
                w.writerow([name, *[caption(rng) for _ in range(5)]])
    return root
