"""dlink.captioning.captioner: both decoders learn, beam search is exact where it can be checked, save/load round-trips."""

import itertools

import numpy as np
import pytest
import torch

from dlink.captioning.captioner import (
    CaptionerConfig,
    PrefixCaptioner,
    RetrievalCaptioner,
    WordVocab,
    clean_caption,
    config_overrides,
)
from dlink.evaluation.metrics import caption_metrics

CAPTIONS = [
    "A dog barks loudly",
    "Rain falls on a roof",
    "A car engine starts and idles",
    "Birds chirp in the morning",
]
TINY = dict(lm="tiny-random", batch_size=4, lr=3e-2, prefix_len=4, projector_hidden=64, max_new_tokens=12)
SCRATCH = dict(
    lm="scratch", batch_size=4, lr=3e-3, prefix_len=2, projector_hidden=64, scratch_width=64,
    scratch_layers=2, scratch_heads=2, scratch_dropout=0.0, vocab_min_count=1, max_new_tokens=12,
)  # fmt: skip


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def scratch(x):
    return PrefixCaptioner(CaptionerConfig(epochs=120, **SCRATCH), device="cpu").fit(
        x, CAPTIONS, val=(x[:2], CAPTIONS[:2]), progress=False
    )


def test_scratch_decoder_fits_a_toy_set_and_reproduces_it(scratch, x):
    loss = scratch.history["train_loss"]
    assert len(loss) == 120 and len(scratch.history["val_loss"]) == 120
    assert np.mean(loss[-5:]) < 0.05  # near-zero: it memorised the four captions
    for beams in (1, 3):
        assert scratch.generate(x, beams=beams, progress=False) == CAPTIONS


def test_frozen_lm_prefix_learns(x):
    cap = PrefixCaptioner(CaptionerConfig(epochs=60, **TINY), device="cpu").fit(x, CAPTIONS, progress=False)
    loss = cap.history["train_loss"]
    # From ~log(vocab) territory to well below: the prefix steers the frozen LM.
    assert np.mean(loss[-5:]) < 0.5 * np.mean(loss[:5])
    preds = cap.generate(x, beams=2, progress=False)
    assert len(preds) == 4 and all(isinstance(p, str) for p in preds)
    m = caption_metrics(preds, [[c] for c in CAPTIONS])
    assert 0.0 <= m["BLEU-1"] <= 1.0 and np.isfinite(m["CIDEr-D"])


def _logprob(cap, ctx, ids):
    """Total log-prob of each continuation `ids` (B, L) after contexts ctx (B, P, E)."""
    ids = torch.tensor(ids)
    emb = torch.cat([ctx, cap.lm.get_input_embeddings()(ids)], 1)
    lp = cap.lm(inputs_embeds=emb).logits[:, ctx.shape[1] - 1 : -1].log_softmax(-1)
    return lp.gather(-1, ids[..., None]).sum((1, 2))


def test_beam_search_equals_exhaustive_search_on_a_tiny_vocabulary():
    # 3 words + <eos>: every sequence of <= 3 tokens is enumerable (3 + 9 + 27 ended, 27 cut at 3).
    caps = ["a b", "b c a", "c", "a a c"]
    x = np.random.default_rng(3).standard_normal((4, 8)).astype(np.float32)
    cfg = CaptionerConfig(epochs=3, **{**SCRATCH, "max_new_tokens": 3, "lr": 1e-3})
    cap = PrefixCaptioner(cfg, device="cpu").fit(x, caps, progress=False)  # barely trained: flat, ambiguous
    words, eos = [3, 4, 5], cap.eos_id
    assert len(cap.vocab) == 6
    cands = [list(s) + [eos] for n in (0, 1, 2) for s in itertools.product(words, repeat=n)]
    cands += [list(s) for s in itertools.product(words, repeat=3)]  # cut by max_new_tokens
    with torch.no_grad():
        ctx = cap._context(cap._prepare(torch.as_tensor(x)))
        for i in range(4):
            scores = [float(_logprob(cap, ctx[i : i + 1], [c])) for c in cands]
            best = cands[int(np.argmax(scores))]
            beam = cap.decode_ids(ctx[i : i + 1], beams=len(cands), max_new_tokens=3, length_penalty=0.0)[0]
            assert beam == [t for t in best if t != eos]


def test_save_load_identical(scratch, x, tmp_path):
    scratch.save(tmp_path / "ck")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "model.safetensors"]
    again = PrefixCaptioner.load(tmp_path / "ck", device="cpu")
    assert again.config == scratch.config and again.vocab.words == scratch.vocab.words
    assert again.generate(x, beams=2, progress=False) == scratch.generate(x, beams=2, progress=False)


def test_training_is_seeded_with_capdec_noise(x):
    runs = [
        PrefixCaptioner(CaptionerConfig(epochs=3, noise_std=0.1, **SCRATCH), device="cpu").fit(
            x, CAPTIONS, progress=False
        )
        for _ in range(2)
    ]
    assert runs[0].history["train_loss"] == runs[1].history["train_loss"]


def test_retrieval_captioner_returns_the_nearest_caption(x):
    r = RetrievalCaptioner().fit(x, CAPTIONS)
    assert r.generate(x[[2, 0]] * 3 + 0.01) == [CAPTIONS[2], CAPTIONS[0]]
    with pytest.raises(ValueError, match="dim 5"):
        r.generate(np.ones((1, 5)))


def test_word_vocab_round_trip():
    v = WordVocab.build(["A dog barks, and a cat meows.", "a dog"], min_count=1)
    assert v.words[:4] == ["<pad>", "<eos>", "<unk>", "a"]
    assert v.decode(v.encode("A dog barks, and a cat meows.")) == "a dog barks, and a cat meows."
    assert v.encode("a zebra") == [v.index["a"], v.unk_id]


def test_bad_inputs(scratch, x):
    fresh = PrefixCaptioner(CaptionerConfig(**SCRATCH), device="cpu")
    with pytest.raises(ValueError, match="not trained"):
        fresh.generate(x)
    with pytest.raises(ValueError, match="list of 4 strings"):
        fresh.fit(x, CAPTIONS[:3])
    with pytest.raises(ValueError, match=r"captions\[1\]"):
        fresh.fit(x, ["a", "", "b", "c"])
    with pytest.raises(ValueError, match=r"captions\[1\]"):
        fresh.fit(x, ["a", "   ", "b", "c"])
    with pytest.raises(ValueError, match="at least 2"):
        fresh.fit(x[:1], ["a dog"])
    with pytest.raises(ValueError, match="NaN"):
        fresh.fit(np.full((4, 16), np.nan), CAPTIONS)
    with pytest.raises(ValueError, match="dim 5"):
        scratch.generate(np.ones((2, 5)))
    with pytest.raises(ValueError, match="prefix_len"):
        CaptionerConfig(prefix_len=0)
    # an LM that cannot be loaded offline: tests/test_lm.py::test_unknown_name_offline_gives_clear_error


def test_generate_checks_beams_and_lengths(scratch, x):
    for kw in ({"beams": -1}, {"beams": 0}, {"beams": 1.5}, {"max_new_tokens": 0}, {"batch_size": 0}):
        name = next(iter(kw))
        with pytest.raises(ValueError, match=f"{name} must be an int >= 1"):
            scratch.generate(x, progress=False, **kw)
    with pytest.raises(ValueError, match="device must be .*'gpu0'"):
        PrefixCaptioner(CaptionerConfig(**SCRATCH), device="gpu0")


def test_huge_and_tiny_rows_caption_like_unit_rows(scratch, x):
    """Rows of norm >= 2e19 are finite in float32 but overflow a plain norm: all became zero and
    got one caption."""
    want = scratch.generate(x, progress=False)
    assert len(set(want)) == 4
    for scale in (1e20, 1e-25):
        assert scratch.generate(x * np.float32(scale), progress=False) == want
    r = RetrievalCaptioner().fit(x * np.float32(1e20), CAPTIONS)
    assert r.generate(x * np.float32(3e30)) == CAPTIONS


def test_clean_caption():
    assert clean_caption("  a dog   barks\nand more") == "A dog barks"
    assert clean_caption("") == ""


def test_training_ignores_the_global_random_state(x):
    # dropout on: the fit must not depend on what ran before it in the process
    cfg = CaptionerConfig(epochs=2, **{**SCRATCH, "scratch_dropout": 0.3})
    torch.manual_seed(1)
    a = PrefixCaptioner(cfg, device="cpu").fit(x, CAPTIONS, progress=False).history["train_loss"]
    torch.manual_seed(2)
    b = PrefixCaptioner(cfg, device="cpu").fit(x, CAPTIONS, progress=False).history["train_loss"]
    assert a == b


def test_config_overrides_parse_each_field_to_its_type_and_name_a_bad_one():
    got = config_overrides(
        ["lora=true", "lm_dtype=bfloat16", "batch_size=32", "lr=5e-4", "lora_targets=q_proj, v_proj"],
        lm="tiny-random",
    )
    assert got == {"lora": True, "lm_dtype": "bfloat16", "batch_size": 32, "lr": 5e-4,
                   "lora_targets": ("q_proj", "v_proj")}  # fmt: skip
    assert config_overrides(["lora_targets=none"]) == {"lora_targets": None}
    for bad, message in [
        (["lora=1"], "expected true or false"),
        (["epochs=two"], "epochs='two'"),
        (["beams=0"], "CaptionerConfig.beams=0"),
        (["lora=true"], "scratch decoder"),  # LoRA needs a pretrained LM
        (["width=3"], "'width=3' is not FIELD=VALUE"),
    ]:
        with pytest.raises(ValueError, match=message):
            config_overrides(bad)
