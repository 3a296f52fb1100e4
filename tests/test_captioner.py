"""dlink.captioner: the prefix captioner learns, decodes correctly, and round-trips through save/load."""

import numpy as np
import pytest
import torch

from dlink.captioner import CaptionerConfig, PrefixCaptioner, _beam_search, clean_caption
from dlink.metrics import caption_metrics

CAPTIONS = [
    "A dog barks loudly",
    "Rain falls on a roof",
    "A car engine starts and idles",
    "Birds chirp in the morning",
]
TINY = dict(lm="tiny-random", batch_size=4, lr=3e-2, prefix_len=4, projector_hidden=64, max_new_tokens=12)


@pytest.fixture(scope="module")
def trained():
    x = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    cap = PrefixCaptioner(CaptionerConfig(epochs=60, **TINY), device="cpu").fit(
        x, CAPTIONS, val=(x[:2], CAPTIONS[:2]), progress=False
    )
    return cap, x


def test_loss_drops_and_outputs_score(trained):
    cap, x = trained
    loss = cap.history["train_loss"]
    assert len(loss) == 60 and len(cap.history["val_loss"]) == 60
    # From ~log(vocab) territory to well below: the prefix steers the frozen LM.
    assert np.mean(loss[-5:]) < 0.5 * np.mean(loss[:5])
    for beams in (1, 3):
        preds = cap.generate(x, beams=beams, progress=False)
        assert len(preds) == 4 and all(isinstance(p, str) for p in preds)
    m = caption_metrics(preds, [[c] for c in CAPTIONS])
    assert 0.0 <= m["BLEU-1"] <= 1.0 and np.isfinite(m["CIDEr-D"])


def test_cached_greedy_equals_full_recompute(trained):
    # The KV-cache decoder must produce exactly what re-running the whole sequence would.
    cap, x = trained
    with torch.no_grad():
        ctx = cap._context(cap._prepare(torch.as_tensor(x)))
        fast = _beam_search(cap.lm, ctx, beams=1, max_new_tokens=6, eos_id=-1)
        seq = ctx
        slow = []
        for _ in range(6):
            nxt = cap.lm(inputs_embeds=seq).logits[:, -1].argmax(-1)
            slow.append(nxt)
            seq = torch.cat([seq, cap.lm.get_input_embeddings()(nxt)[:, None]], dim=1)
    assert fast == torch.stack(slow, 1).tolist()


def test_beam_search_finds_at_least_greedy_logprob(trained):
    cap, x = trained
    with torch.no_grad():
        ctx = cap._context(cap._prepare(torch.as_tensor(x)))

        def logprob(ids):  # total log-prob of fixed-length continuations (no EOS: eos_id=-1)
            emb = torch.cat([ctx, cap.lm.get_input_embeddings()(torch.tensor(ids))], 1)
            lp = cap.lm(inputs_embeds=emb).logits[:, ctx.shape[1] - 1 : -1].log_softmax(-1)
            return lp.gather(-1, torch.tensor(ids)[..., None]).sum((1, 2))

        greedy = logprob(_beam_search(cap.lm, ctx, beams=1, max_new_tokens=5, eos_id=-1))
        beam = logprob(_beam_search(cap.lm, ctx, beams=4, max_new_tokens=5, eos_id=-1))
    assert (beam >= greedy - 1e-4).all()


def test_save_load_identical(trained, tmp_path):
    cap, x = trained
    cap.save(tmp_path / "ck")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "model.safetensors"]
    again = PrefixCaptioner.load(tmp_path / "ck", device="cpu")
    assert again.config == cap.config
    assert again.generate(x, beams=2, progress=False) == cap.generate(x, beams=2, progress=False)


def test_training_is_seeded_with_capdec_noise():
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    runs = [
        PrefixCaptioner(CaptionerConfig(epochs=3, noise_std=0.1, **TINY), device="cpu").fit(
            x, CAPTIONS, progress=False
        )
        for _ in range(2)
    ]
    assert runs[0].history["train_loss"] == runs[1].history["train_loss"]


def test_bad_inputs(trained):
    cap, x = trained
    fresh = PrefixCaptioner(CaptionerConfig(**TINY), device="cpu")
    with pytest.raises(ValueError, match="not trained"):
        fresh.generate(x)
    with pytest.raises(ValueError, match="list of 4 strings"):
        fresh.fit(x, CAPTIONS[:3])
    with pytest.raises(ValueError, match=r"captions\[1\]"):
        fresh.fit(x, ["a", "", "b", "c"])
    with pytest.raises(ValueError, match="NaN"):
        fresh.fit(np.full((4, 16), np.nan), CAPTIONS)
    with pytest.raises(ValueError, match="dim 5"):
        cap.generate(np.ones((2, 5)))
    with pytest.raises(ValueError, match="prefix_len"):
        CaptionerConfig(prefix_len=0)


def test_clean_caption():
    assert clean_caption("  a dog   barks\nand more") == "A dog barks"
    assert clean_caption("") == ""
