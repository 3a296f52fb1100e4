"""Audio-text encoders by name, and whole splits embedded through a content-keyed cache.

Two encoders implement `dlink.encoders.base.Encoder`:

- ``"laion-clap"`` (`dlink.encoders.laion`): the paper's encoder; needs the user's checkpoint file.
- ``"embedded"`` (`dlink.encoders.embedded_clap`): a small CLAP we train offline on the embedded data set
  (frozen pretrained towers + contrastive projection heads).

`ENCODERS` maps each name to its `EncoderEntry`: how to load it, its options class and whether it
is pretrained elsewhere. Everything else (`load_encoder`, `dlink.profiles.resolve_params`,
`dlink.experiment`) asks the entry, so a new encoder is one module that calls `register_encoder`
when imported (import it before resolving parameters that name it). The two built-ins are listed
at the end of this module with loaders that import their module on first use: resolving a
notebook's parameters imports neither torch nor laion_clap (`LaionClapOptions` is light).

An options class is a dataclass with
- ``PARAMS``: {notebook parameter name: its value when not given}; `resolve_params` takes these names;
- ``PATH_PARAMS``: those of them that are paths (made absolute against the user's directory);
- ``from_params(errors, **values)``: the options of a run with this encoder, each problem appended
  to `errors`;
- ``unused_params(errors, **values)``: with another encoder, the names given that it would ignore
  (refused by `resolve_params`), the values still checked;
- ``as_params()``: the parameter values back (JSON-able, for `Params.as_dict`; the class built
  with no arguments gives the values of parameters not given);
- ``encoder(device)``: the encoder these options describe.

`embed_split` embeds a whole split (audio + every caption) and caches the result on disk under
``CACHE/embeddings`` keyed by the encoder's fingerprint and the CONTENT of the inputs (file bytes,
waveform bytes, caption strings), so a rerun, a renamed file or a copied data folder costs nothing,
and a changed checkpoint or a changed clip never returns a stale embedding.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlink.cache import cached, content_key
from dlink.device import resolve_device
from dlink.encoders.base import Encoder, fit_length, l2_normalize, validate_texts  # noqa: F401 (public here too)
from dlink.encoders.laion import LaionClapOptions


@dataclass(frozen=True)
class EncoderEntry:
    """One encoder name: `load(checkpoint, device, **kwargs)` builds it (device already resolved);
    `options` is its options class (None: it takes no notebook parameters).

    `train` None: pretrained elsewhere, the same for every seed. Otherwise the run trains it, once
    per seed, on its own "enc" scenes (`dlink.experiment.splits`): `train(enc, val, out=folder,
    seed=seed, max_epochs=profile.clap_epochs)` writes a checkpoint folder that `load` reads (its
    config.json written last: a folder without one is trained again), cached
    under the run's `cache_dir` and keyed by the code of `code_modules` (paths under dlink/, no
    suffix), so a change to the training code retrains it."""

    name: str
    load: Callable[..., Encoder]
    options: type | None = None
    train: Callable[..., Any] | None = None
    code_modules: tuple[str, ...] = ()
    cache_dir: str = ""

    @property
    def pretrained(self) -> bool:
        return self.train is None


# name -> entry; iterating gives the names, in the order they were registered
ENCODERS: dict[str, EncoderEntry] = {}


def register_encoder(
    name: str,
    load: Callable[..., Encoder],
    options: type | None = None,
    train: Callable[..., Any] | None = None,
    code_modules: tuple[str, ...] = (),
    cache_dir: str = "",
) -> EncoderEntry:
    """Make `name` usable by `load_encoder` and as a notebook's `encoder` parameter (arguments as
    the fields of `EncoderEntry`; `cache_dir` defaults to the name)."""
    if name in ENCODERS:
        raise ValueError(f"encoder {name!r} is registered already")
    ENCODERS[name] = entry = EncoderEntry(name, load, options, train, tuple(code_modules), cache_dir or name)
    return entry


def encoder_entry(name: str) -> EncoderEntry:
    """The entry of a registered encoder (ValueError naming the registered ones otherwise)."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {tuple(ENCODERS)}")
    return ENCODERS[name]


def option_classes() -> dict[type, list[str]]:
    """Every registered options class, with the names of the encoders that take it."""
    out: dict[type, list[str]] = {}
    for entry in ENCODERS.values():
        if entry.options is not None:
            out.setdefault(entry.options, []).append(entry.name)
    return out


def option_params() -> dict[str, Any]:
    """{notebook parameter name: its value when not given} of every registered options class."""
    return {name: default for cls in option_classes() for name, default in cls.PARAMS.items()}


def load_encoder(
    name: str = "embedded", checkpoint: str | os.PathLike | None = None, device: str = "cpu", **kwargs
):
    """Build an encoder by name.

    - ``"embedded"``: `checkpoint` = folder written by `train_embedded_clap` (config.json + model.safetensors).
    - ``"laion-clap"``: `checkpoint` = a LAION-CLAP `.pt`/`.ckpt`/`.safetensors` file; extra kwargs
      (`amodel`, `tmodel`, `enable_fusion`, `tokenizer`, `download`) go to `dlink.encoders.laion.LaionClap`.
    """
    device = resolve_device(device)  # "gpu0" fails here, naming the argument, not deep in torch
    return encoder_entry(name).load(checkpoint, device=device, **kwargs)


def _load_embedded(checkpoint, device: str, **kwargs) -> Encoder:
    from dlink.encoders.embedded_clap import EmbeddedClap

    if checkpoint is None:
        raise ValueError(
            "load_encoder('embedded') needs checkpoint=<folder from train_embedded_clap>; "
            "train one with dlink.encoders.embedded_clap.train_embedded_clap(train_df, val_df, out=folder)"
        )
    return EmbeddedClap.load(checkpoint, device=device, **kwargs)


def _train_embedded(enc, val, out, seed: int, max_epochs: int):
    from dlink.encoders.embedded_clap import train_embedded_clap

    return train_embedded_clap(enc, val, out=out, seed=seed, max_epochs=max_epochs)


def _load_laion(checkpoint, device: str, **kwargs) -> Encoder:
    from dlink.encoders.laion import LaionClap

    return LaionClap(checkpoint=checkpoint, device=device, **kwargs)


def embed_split(encoder: Encoder, df, cache: bool = True, progress: bool = True) -> dict[str, np.ndarray]:
    """Embed a split: `{"audio": (N, D), "text": (N, C, D)}`, float32, L2-normalised.

    `df` has columns `audio` (path) and `captions` (list[str]); every row must have the same
    number C of captions (raises otherwise: pad or subsample the captions before calling).
    Cached by content when `cache=True` and the encoder has a fingerprint (random-init encoders
    have none and are never cached).
    """
    for col in ("audio", "captions"):
        if col not in df.columns:
            raise ValueError(f"embed_split needs a DataFrame with column {col!r}; got {list(df.columns)}")
    if len(df) == 0:
        raise ValueError("embed_split got an empty DataFrame")
    caps = [list(c) for c in df["captions"]]
    counts = {len(c) for c in caps}
    if len(counts) != 1 or 0 in counts:
        bad = next(i for i, c in enumerate(caps) if len(c) != len(caps[0]))
        raise ValueError(
            f"embed_split needs the same number of captions per row; row {bad} has {len(caps[bad])}, "
            f"row 0 has {len(caps[0])} (counts seen: {sorted(counts)}); pad or subsample captions first"
        )
    n_cap = counts.pop()
    audio_items = [str(p) for p in df["audio"]]
    flat = [t for c in caps for t in c]
    validate_texts(flat)
    use = cache and encoder.fingerprint is not None
    fp = encoder.fingerprint or ""
    audio = cached(
        content_key(fp, audio_items, "audio") if use else "",
        lambda: encoder.embed_audio(audio_items, progress=progress),
        enabled=use,
    )
    text = cached(
        content_key(fp, flat, "text") if use else "",
        lambda: encoder.embed_text(flat, progress=progress),
        enabled=use,
    )
    return {"audio": audio.astype(np.float32), "text": text.reshape(len(df), n_cap, -1).astype(np.float32)}


register_encoder(
    "embedded",
    _load_embedded,
    train=_train_embedded,
    code_modules=("encoders/embedded_clap",),
    cache_dir="embedded-clap",
)
register_encoder("laion-clap", _load_laion, options=LaionClapOptions)
