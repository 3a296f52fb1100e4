"""The scale path: DataLoader-decoded batched extraction, and two torchrun processes (gloo, CPU)
extracting into the notebooks' embedding cache and fitting a captioner with DDP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dlink.encoders.laion")
import paper_fixtures as fixtures  # noqa: E402

from dlink import distributed  # noqa: E402
from dlink.cache import content_key  # noqa: E402


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    vocab = fixtures.make_roberta_tokenizer(d / "tok")
    fixtures.make_laion_checkpoint(d / "clap.pt", vocab, position_ids=False)
    fixtures.make_audiocaps(d / "ac", layout="v1", counts=(3, 1, 2))
    return d


@pytest.fixture(scope="module")
def enc(user):
    from dlink.encoders.laion import LaionClap

    return LaionClap(checkpoint=user / "clap.pt", tokenizer=user / "tok")  # one process, no cache


def _torchrun(user: Path, *args: str) -> subprocess.CompletedProcess:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = dict(os.environ, DLINK_ROOT=str(user / "project"), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")  # fmt: skip
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "dlink.distributed", *args]
    return subprocess.run(cmd, cwd=user, env=env, capture_output=True, text=True, timeout=240)


def test_dataloader_extraction_equals_the_encoders_own(user, enc):
    files = sorted((user / "ac" / "AUDIOCAPS" / "audio_32000Hz" / "test").glob("*.flac"))
    ref = enc.embed_audio(files, progress=False)  # batch of 2, decoded in this process
    got = distributed.embed_audio_files(enc, files, batch_size=1, num_workers=1)
    assert got.shape == ref.shape == (2, 512) and np.allclose(got, ref, atol=1e-5)


@pytest.mark.slow
def test_two_processes_extract_the_single_process_embeddings_into_the_notebooks_cache(user, enc):
    res = _torchrun(user, "extract", "--dataset", "audiocaps", "--data-root", "ac", "--clap-ckpt", "clap.pt",
                    "--clap-tokenizer", "tok", "--splits", "train,test", "--batch-size", "2", "--workers", "1")  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.count("train: audio (3, 512), text (3, 1, 512)") == 1  # printed by rank 0 only

    from dlink import data

    cache = user / "project" / "data" / "cache" / "embeddings"
    for split, n_cap in (("train", 1), ("test", 5)):
        df = data.load_split(split, dataset="audiocaps", root=user / "ac")
        audio = [str(p) for p in df["audio"]]
        flat = [t for c in df["captions"] for t in c]
        # the entries embed_split (notebook 02) looks up, under the same keys
        a = np.load(distributed.cache_file(content_key(enc.fingerprint, audio, "audio"), cache))
        t = np.load(distributed.cache_file(content_key(enc.fingerprint, flat, "text"), cache))
        assert a.shape == (len(df), 512) and t.shape == (len(df) * n_cap, 512)
        assert np.allclose(a, enc.embed_audio(audio, progress=False), atol=1e-5)
        assert np.allclose(t, enc.embed_text(flat, progress=False), atol=1e-5)


@pytest.mark.slow
def test_two_process_captioner_fit_has_identical_weights_and_loads(user):
    from dlink.captioning.captioner import PrefixCaptioner

    rng = np.random.default_rng(0)
    captions = [fixtures.caption(rng) for _ in range(24)]
    np.save(user / "X.npy", rng.standard_normal((24, 16)).astype(np.float32))
    (user / "captions.json").write_text(json.dumps(captions))
    res = _torchrun(user, "train-captioner", "--embeddings", "X.npy", "--captions", "captions.json",
                    "--out", "cap", "--epochs", "2", "--batch-size", "8", "--report", "report.json")  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((user / "report.json").read_text())
    assert report["world_size"] == 2 and len(set(report["weights_sha256"])) == 1
    cap = PrefixCaptioner.load(user / "cap", device="cpu")
    losses = cap.history["train_loss"]
    assert len(losses) == 2 * 3 and np.isfinite(losses).all()
    assert distributed.weights_sha256(cap) == report["weights_sha256"][0]
    assert len(cap.generate(np.load(user / "X.npy")[:2], beams=1)) == 2
