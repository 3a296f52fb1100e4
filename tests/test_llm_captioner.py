"""The prefix captioner on any causal LM: its dtype, LoRA targets per architecture, bad LM folders
failing before training, and a pretrained LM's fit resuming after a killed epoch (the llm profile).

Every LM here is a tiny random model saved by the test (no hub): Llama-style in bfloat16, GPT-2-style
(fused c_attn) and GPT-NeoX-style (fused query_key_value), with a word-level tokenizer built here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from dlink.captioning.captioner import CaptionerConfig, PrefixCaptioner
from dlink.captioning.lm import load_lm, lora_target_modules

CAPTIONS = ["a dog barks loudly", "rain falls on a roof", "a car engine starts", "birds chirp in the morning"]
FIT = dict(
    batch_size=4, lr=3e-2, prefix_len=2, projector_hidden=32, max_new_tokens=6, beams=2, prompt="sound :"
)
ROOT = Path(__file__).resolve().parent.parent


def _tokenizer(eos: bool = True):
    """A word-level tokenizer over the captions' words plus fillers (over 1,000 tokens, as a real one)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for c in CAPTIONS for w in c.split()} | {"sound", ":"})
    vocab = ["<unk>", "</s>", *words, *(f"w{i}" for i in range(1000))]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", **({"eos_token": "</s>"} if eos else {})
    )


def _model(kind: str, vocab: int):
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(0)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                            num_attention_heads=2, num_key_value_heads=1, eos_token_id=1, bos_token_id=1))  # fmt: skip
    if kind == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=16, n_layer=2, n_head=2, n_positions=64,
                                          eos_token_id=1, bos_token_id=1))  # fmt: skip
    return GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                            intermediate_size=32, max_position_embeddings=64, eos_token_id=1, bos_token_id=1))  # fmt: skip


def _save_lm(folder: Path, kind: str, dtype=torch.float32, eos: bool = True) -> str:
    tok = _tokenizer(eos)
    _model(kind, len(tok)).to(dtype).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    root = tmp_path_factory.mktemp("lms")
    return {
        "llama-bf16": _save_lm(root / "llama-bf16", "llama", torch.bfloat16),
        "gpt2": _save_lm(root / "gpt2", "gpt2"),
        "neox": _save_lm(root / "neox", "neox"),
    }


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)


def test_a_bfloat16_lm_trains_in_its_own_dtype_or_in_float32(lms, x):
    folder = lms["llama-bf16"]
    assert json.loads((Path(folder) / "config.json").read_text())["dtype"] == "bfloat16"
    own = PrefixCaptioner(CaptionerConfig(lm=folder, lm_dtype="model", epochs=3, **FIT), device="cpu")
    assert own.lm.dtype == torch.bfloat16
    own.fit(x, CAPTIONS, val=(x[:2], CAPTIONS[:2]), progress=False)  # a float32 projector into bf16
    assert all(p.dtype == torch.float32 for p in own.projector.parameters())  # master weights
    assert np.isfinite(own.history["train_loss"]).all() and len(own.history["val_loss"]) == 3
    assert len(own.generate(x, progress=False)) == 4
    default = PrefixCaptioner(CaptionerConfig(lm=folder, epochs=1, **FIT), device="cpu")
    assert default.lm.dtype == torch.float32  # the stated default, whatever the checkpoint holds
    default.fit(x, CAPTIONS, progress=False)
    with pytest.raises(ValueError, match="lm_dtype"):
        CaptionerConfig(lm=folder, lm_dtype="int8")
    with pytest.raises(ValueError, match="lm_dtype is for a pretrained LM"):
        CaptionerConfig(lm="scratch", lm_dtype="bfloat16")


@pytest.mark.parametrize(
    "kind, dtype, targets",
    [("llama-bf16", "model", {"q_proj", "v_proj"}), ("gpt2", "float32", {"c_attn"}), ("neox", "float32", {"query_key_value"})],
)  # fmt: skip
def test_lora_targets_are_found_per_architecture_and_learn(lms, x, kind, dtype, targets, tmp_path):
    cfg = CaptionerConfig(lm=lms[kind], lm_dtype=dtype, lora=True, lora_r=2, epochs=3, **FIT)
    cap = PrefixCaptioner(cfg, device="cpu").fit(x, CAPTIONS, progress=False)
    lora = {k: v for k, v in cap._trainable().items() if "lora_" in k}
    assert lora and {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in lora} == targets
    assert all(v.dtype == torch.float32 for v in lora.values())  # fp32 adapters on a bf16 LM too
    assert any(float(v.detach().abs().max()) > 0 for k, v in lora.items() if "lora_B" in k)  # B starts at 0
    cap.save(tmp_path / "ck")
    again = PrefixCaptioner.load(tmp_path / "ck", device="cpu")
    assert again.config == cap.config
    assert again.generate(x, progress=False) == cap.generate(x, progress=False)


def test_lora_targets_parameter_and_a_clear_error_when_none_is_known(lms):
    gpt2, _ = load_lm(lms["gpt2"])
    assert lora_target_modules(gpt2) == ["c_attn"]
    assert lora_target_modules(gpt2, ["c_attn", "c_proj"]) == ["c_attn", "c_proj"]
    with pytest.raises(ValueError, match=r"lora_targets=\['q_proj'\].*c_attn"):
        lora_target_modules(gpt2, ["q_proj"])

    class Odd(torch.nn.Module):  # an architecture neither peft nor the fallback knows
        def __init__(self):
            super().__init__()
            self.mixer = torch.nn.Linear(4, 4)

    with pytest.raises(
        ValueError, match=r"no LoRA target modules known.*CaptionerConfig.lora_targets.*mixer"
    ):
        lora_target_modules(Odd())
    with pytest.raises(ValueError, match="lora_targets needs lora=True"):
        CaptionerConfig(lm=lms["gpt2"], lora_targets=["c_attn"])
    with pytest.raises(ValueError, match="lora_targets"):
        CaptionerConfig(lm=lms["gpt2"], lora=True, lora_targets="c_attn")
    assert CaptionerConfig(lm=lms["gpt2"], lora=True, lora_targets=["c_attn"]).lora_targets == ("c_attn",)


def test_a_tokenizer_without_eos_or_pad_fails_before_training(tmp_path):
    folder = _save_lm(tmp_path / "noeos", "llama", eos=False)
    with pytest.raises(ValueError, match=r"lm='.*noeos'.*no eos token.*add_special_tokens"):
        PrefixCaptioner(CaptionerConfig(lm=folder, **FIT), device="cpu")


def test_a_folder_without_weights_fails_naming_lm_and_the_fix(tmp_path):
    folder = Path(_save_lm(tmp_path / "noweights", "gpt2"))
    (folder / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"lm='.*noweights'.*has no weights.*save_pretrained"):
        PrefixCaptioner(CaptionerConfig(lm=str(folder), **FIT), device="cpu")


def test_a_model_that_is_not_a_causal_lm_fails_naming_lm(tmp_path):
    from transformers import BertConfig, BertModel

    tok = _tokenizer()
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path / "bert")  # fmt: skip
    tok.save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match=r"lm='.*bert'.*not a causal language model"):
        PrefixCaptioner(CaptionerConfig(lm=str(tmp_path / "bert"), **FIT), device="cpu")


# The llm profile's code path (experiment.fit_captioner -> caption_rows -> write_results, as notebook
# 05 calls them) with tiny-random in place of SmolLM2. `kill` dies by SIGKILL right after epoch 1's
# state is on disk, as a user's Ctrl-C / OOM / reboot would leave it.
SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import numpy as np
    from dlink import experiment, paths
    from dlink.captioning.aac import write_results
    from dlink.captioning.captioner import PrefixCaptioner
    from dlink.profiles import resolve_params

    data, mode = Path(sys.argv[1]), sys.argv[2]
    paths.DATA = data  # the run's caches (run_dir) under the test's folder
    if mode == "kill":
        save = PrefixCaptioner._save_state

        def save_then_die(self, *a, **k):
            save(self, *a, **k)
            os.kill(os.getpid(), signal.SIGKILL)

        PrefixCaptioner._save_state = save_then_die
    params = resolve_params(profile="smoke", lm="tiny-random", device="cpu")
    x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    caps = {caps!r} * 2
    cap = experiment.fit_captioner(params, "zs-text", x, caps, seed=0, val=(x[:2], caps[:2]), **{cfg!r})
    print("HISTORY", len(cap.history["train_loss"]), len(cap.history["val_loss"]))
    refs = [[c] for c in caps[:4]]
    rows = []
    for name, inp in {{"identity": x[4:], "diffusion_link": x[:4], "text_oracle": x[:4]}}.items():
        rows += experiment.caption_rows(params, cap, {{name: inp}}, refs, seed=0)[0]
    print("TABLE", *write_results(rows, data / "results" / "aac_zero_shot", title="Zero-shot AAC", ids=list("abcd")))
    """
)


def test_a_pretrained_lm_fit_resumes_after_a_killed_epoch_and_makes_the_table(tmp_path):
    cfg = dict(epochs=3, batch_size=4, lr=3e-2, prefix_len=2, projector_hidden=32, max_new_tokens=6)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(caps=CAPTIONS, cfg=cfg))
    env = dict(
        os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"
    )

    def run(mode):
        return subprocess.run([sys.executable, str(script), str(tmp_path / "data"), mode], env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip

    killed = run("kill")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    states = list((tmp_path / "data" / "runs").glob("*/captioners/zs-text-*.partial/training_state.pt"))
    assert len(states) == 1
    assert torch.load(states[0], weights_only=True)["epochs_done"] == 1
    assert not list(states[0].parent.parent.glob("zs-text-*/config.json"))  # no finished captioner yet

    resumed = run("resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming at epoch 2 of 3 (1 finished" in resumed.stdout
    assert "HISTORY 6 3" in resumed.stdout  # 2 steps x 3 epochs, a validation loss per epoch
    assert not states[0].parent.exists()  # the finished captioner replaces the epoch state
    table = (tmp_path / "data" / "results" / "aac_zero_shot.md").read_text()
    assert "diffusion_link" in table and "text_oracle" in table

    # the resumed fit is the uninterrupted one
    from dlink.captioning.aac import train_captioner

    x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    caps = CAPTIONS * 2
    whole = train_captioner(
        x, caps, dict(lm="tiny-random", beams=2, seed=0, **cfg), device="cpu", val=(x[:2], caps[:2])
    )
    saved = json.loads(next(states[0].parent.parent.glob("zs-text-*/config.json")).read_text())
    assert saved["history"]["train_loss"] == whole.history["train_loss"]
    assert saved["history"]["val_loss"] == whole.history["val_loss"]
