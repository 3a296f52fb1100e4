"""dlink.captioning.lm: offline LMs load, tiny-random is seeded, unknown names fail clearly."""

import os
import subprocess
import sys

import pytest
import torch

from dlink import paths
from dlink.captioning.lm import OFFLINE_LMS, load_lm
from dlink.device import resolve_device


def test_tiny_random_is_seeded_and_has_real_tokenizer():
    m1, tok = load_lm("tiny-random", seed=0)
    m2, _ = load_lm("tiny-random", seed=0)
    m3, _ = load_lm("tiny-random", seed=1)
    assert len(tok) == 49152  # the SmolLM2 vocabulary, not a stub
    assert tok.pad_token is not None
    w1, w2, w3 = (m.get_input_embeddings().weight for m in (m1, m2, m3))
    assert torch.equal(w1, w2) and not torch.equal(w1, w3)
    assert m1.config.num_hidden_layers == 2 and m1.config.hidden_size == 64
    ids = tok("a dog barks", return_tensors="pt").input_ids
    assert m1(input_ids=ids).logits.shape == (1, ids.shape[1], 49152)


def test_resolve_device():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device("cpu") == "cpu"
    for bad in ("gpu0", "cuda:x", "", "CPU"):
        with pytest.raises(ValueError, match="device"):
            resolve_device(bad)


def test_unknown_name_offline_gives_clear_error():
    # A subprocess, because huggingface_hub reads HF_HUB_OFFLINE once at import time.
    code = (
        "from dlink.captioning.lm import load_lm\n"
        "try:\n    load_lm('no-such-org/no-such-model-xyz')\n"
        "except ValueError as e:\n    print('ERR', e)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "ERR" in out.stdout, out.stdout + out.stderr
    msg = out.stdout
    assert "no-such-org/no-such-model-xyz" in msg and "internet" in msg
    assert all(name in msg for name in OFFLINE_LMS)


@pytest.mark.skipif(
    not (paths.CACHE / "lm" / "smollm2-135m" / "model.safetensors").is_file(),
    reason="SmolLM2 not converted yet (first load_lm('smollm2-135m') converts it, ~25 s)",
)
def test_smollm2_from_cache_knows_english():
    model, tok = load_lm("smollm2-135m")
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(prompt, return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1] :])
