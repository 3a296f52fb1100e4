"""Scale: audio decoded in DataLoader workers, batched extraction, and several processes (torchrun).

One process (what the notebooks do) stays the default; this module adds, for AudioCaps-sized runs:

- `embed_audio_files`: clips decoded and resampled in `torch.utils.data.DataLoader` workers while
  the encoder embeds the previous batch; `(N, D) float32`, L2-normalised, as `Encoder.embed_audio`.
- `extract_split`: a split's embeddings sharded over the ranks of a torchrun job (rank r takes
  rows r, r + W, ...), gathered on rank 0 and written to the SAME content-keyed cache entry that
  `dlink.encoders.registry.embed_split` (notebook 02) reads, so the notebooks then start from a cache hit.
- `train_captioner`: `dlink.captioning.aac.train_captioner` under DistributedDataParallel: every rank draws the same
  batch order and noise as the single-process fit and takes its share of each batch; gradients are
  averaged by DDP, so the ranks' weights stay identical. The distributed code lives here, so the
  single-process `PrefixCaptioner.fit` carries none of it.

    torchrun --standalone --nproc_per_node 4 -m dlink.distributed extract \\
        --dataset audiocaps --data-root AUDIOCAPS_ROOT --clap-ckpt 630k-audioset-best.pt \\
        --clap-tokenizer roberta-base/ --workers 4 --batch-size 64
    torchrun --standalone --nproc_per_node 4 -m dlink.distributed train-captioner \\
        --embeddings embeddings.npy --captions captions.json --out captioner/ --lm gpt2 --epochs 10

Backend: nccl when CUDA is available (one GPU per rank, cuda:LOCAL_RANK), gloo on CPU. Without
torchrun (no WORLD_SIZE in the environment) the same commands run as one process.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dlink import paths
from dlink._io import write_json
from dlink.audio import load_audio
from dlink.cache import cache_file, cached, content_key
from dlink.encoders.base import Encoder, l2_normalize
from dlink.encoders.laion import DEFAULT_AMODEL
from dlink.encoders.registry import embed_split

# --------------------------------------------------------------------------- processes


def init(backend: str | None = None) -> tuple[int, int, str]:
    """(rank, world_size, device) of this process; joins the torchrun group when WORLD_SIZE is set.

    backend None: "nccl" with CUDA (device cuda:LOCAL_RANK), else "gloo" (device "cpu").
    """
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = f"cuda:{local}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(local)
    if int(os.environ.get("WORLD_SIZE", 1)) == 1:
        return 0, 1, device
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"))
    return dist.get_rank(), dist.get_world_size(), device


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _broadcast(obj, src: int = 0):
    dist = _dist()
    if dist is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def _gather_rows(part: np.ndarray, n: int, rank: int, world: int) -> np.ndarray | None:
    """Rank 0: the `(n, D)` array whose rows r, r + W, ... came from rank r; other ranks: None."""
    dist = _dist()
    if dist is None:
        return part
    parts = [None] * world if rank == 0 else None
    dist.gather_object(part, parts, dst=0)
    if rank != 0:
        return None
    out = np.empty((n, parts[0].shape[1]), dtype=np.float32)
    for r, p in enumerate(parts):
        out[r::world] = p
    return out


def _barrier():
    dist = _dist()
    if dist is not None:
        dist.barrier()


# --------------------------------------------------------------------------- extraction


class AudioFiles:
    """Map-style dataset: item i = file i decoded as `(n,)` float32 mono at `sr` (a DataLoader input)."""

    def __init__(self, files: Sequence, sr: int):
        self.files, self.sr = [str(f) for f in files], int(sr)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        return load_audio(self.files[i], self.sr)


def embed_audio_files(
    encoder: Encoder, files: Sequence, batch_size: int | None = None, num_workers: int = 0,
    progress: bool = False,
) -> np.ndarray:  # fmt: skip
    """Embed audio files, decoding them in `num_workers` DataLoader workers: `(N, D)` float32, unit rows.

    Same result as `encoder.embed_audio(files)` (same decoding, same per-clip policy); with
    workers, decoding overlaps the encoder's forward passes.
    """
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    files = [str(f) for f in files]
    if not files:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    loader = DataLoader(AudioFiles(files, encoder.sample_rate), batch_size=batch_size or encoder.audio_batch_size,
                        num_workers=num_workers, collate_fn=list, shuffle=False)  # fmt: skip
    out = []
    for wavs in tqdm(loader, desc=f"{encoder.name} audio", unit="batch", disable=not progress):
        out.append(np.asarray(encoder._embed_waveforms(wavs), dtype=np.float32))
    return l2_normalize(np.concatenate(out))


def extract_split(
    encoder: Encoder, df, rank: int = 0, world: int = 1, batch_size: int | None = None,
    num_workers: int = 0, progress: bool = False,
) -> dict | None:  # fmt: skip
    """Embed a split (columns `audio`, `captions`) with `world` processes into `embed_split`'s cache.

    Every rank embeds its rows (r, r + W, ...) of the clips and of the flattened captions; rank 0
    gathers them and writes the cache entries atomically. Rank 0 returns `embed_split(encoder, df)`
    (read back from that cache: `{"audio": (N, D), "text": (N, C, D)}`), the other ranks None.
    Entries already in the cache are not recomputed.
    """
    if encoder.fingerprint is None:
        raise ValueError(
            "extract_split writes the embedding cache, which needs an encoder with a fingerprint "
            "(a checkpoint file); a random-init encoder has none"
        )
    audio = [str(p) for p in df["audio"]]
    flat = [t for c in df["captions"] for t in c]
    jobs = []
    for kind, items in (("audio", audio), ("text", flat)):
        key = content_key(encoder.fingerprint, items, kind) if rank == 0 else None
        key = _broadcast(key)  # rank 0 hashes the files once
        if not _broadcast(cache_file(key).is_file() if rank == 0 else None):
            jobs.append((kind, items, key))
    for kind, items, key in jobs:
        mine = items[rank::world]
        if kind == "audio":
            part = embed_audio_files(encoder, mine, batch_size, num_workers, progress)
        else:
            part = (
                encoder.embed_text(mine, progress=progress)
                if mine
                else np.zeros((0, encoder.dim), np.float32)
            )
        full = _gather_rows(part, len(items), rank, world)
        if rank == 0:
            cached(key, lambda full=full: full)  # written atomically, as embed_split writes its entries
    _barrier()
    return embed_split(encoder, df, progress=False) if rank == 0 else None


# --------------------------------------------------------------------------- captioner training


def train_captioner(
    embeddings, captions: list[str], config=None, device: str = "cpu", val=None, progress: bool = False
):
    """`dlink.captioning.aac.train_captioner` by every rank of the job together (DDP): a PrefixCaptioner fitted on
    embeddings (N, D) + N captions. Single process (no torchrun): exactly `PrefixCaptioner(config).fit(...)`. Returns the captioner
    on every rank; its weights are identical across ranks.
    """
    from dlink.captioning.captioner import CaptionerConfig, PrefixCaptioner

    if isinstance(config, dict):
        config = CaptionerConfig(**config)
    cls = _ddp_captioner_class() if _dist() is not None else PrefixCaptioner
    return cls(config, device=device).fit(embeddings, captions, val=val, progress=progress)


@functools.cache
def _ddp_captioner_class():
    import torch
    from torch import nn

    from dlink.captioning.captioner import PrefixCaptioner

    class _Loss(nn.Module):
        """The captioner's trainable modules as one nn.Module whose forward is its loss (for DDP)."""

        def __init__(self, cap):
            super().__init__()
            self.projector, self.lm, self._cap = cap.projector, cap.lm, [cap]

        def forward(self, x, captions):
            return self._cap[0]._loss(x, captions)

    class DDPCaptioner(PrefixCaptioner):
        """PrefixCaptioner whose `fit` runs under DistributedDataParallel in an initialised group.

        Every rank draws the single-process fit's batch order and noise (same generator, same
        seed) and takes rows r, r + W, ... of each batch; DDP averages the gradients, so one step
        sees the whole batch. The logged loss is the mean over ranks.
        """

        def _train(self, *args, **kwargs):
            from torch.nn.parallel import DistributedDataParallel as DDP

            on_gpu = str(self.device).startswith("cuda")
            self._ddp = DDP(
                _Loss(self), device_ids=[self.device] if on_gpu else None
            )  # rank 0's weights to all
            try:
                super()._train(*args, **kwargs)
            finally:
                del self._ddp

        def _batch_loss(self, xb, idx, captions):
            import torch.distributed as dist

            rank, world = dist.get_rank(), dist.get_world_size()
            mine = torch.arange(rank, len(idx), world) if len(idx) >= world else torch.arange(len(idx))
            return self._ddp(xb[mine].to(self.device), [captions[i] for i in idx[mine].tolist()])

        def _logged_loss(self, loss):
            import torch.distributed as dist

            mean = loss.detach().clone()
            dist.all_reduce(mean)
            return float(mean) / dist.get_world_size()

        def _writes_state(self):  # one writer; every rank holds the same weights
            import torch.distributed as dist

            return dist.get_rank() == 0

    return DDPCaptioner


def __getattr__(name):  # DDPCaptioner is built on first use: importing this module needs no torch
    if name == "DDPCaptioner":
        return _ddp_captioner_class()
    raise AttributeError(name)


def weights_sha256(cap) -> str:
    """sha256 of a captioner's trainable tensors (to compare ranks)."""
    h = hashlib.sha256()
    for k, v in sorted(cap._trainable().items()):
        h.update(k.encode() + v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dlink.distributed", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("extract", help="embed a data set's splits into the notebooks' embedding cache")
    e.add_argument(
        "--dataset", required=True, choices=("audiocaps", "clotho"), help="which data set to embed"
    )
    e.add_argument("--data-root", required=True, help="aac-datasets root folder")
    e.add_argument("--clap-ckpt", required=True, help="LAION-CLAP checkpoint file")
    e.add_argument("--clap-tokenizer", default=None, help="local roberta-base tokenizer folder")
    e.add_argument("--clap-amodel", default=DEFAULT_AMODEL, help="LAION-CLAP audio tower of the checkpoint")
    e.add_argument("--clap-fusion", action="store_true", help="the checkpoint is a fusion model")
    e.add_argument(
        "--splits", default="train,val,test", help="comma-separated splits (default train,val,test)"
    )
    e.add_argument("--batch-size", type=int, default=32, help="clips per forward pass (per process)")
    e.add_argument("--workers", type=int, default=2, help="DataLoader workers decoding audio (per process)")
    t = sub.add_parser("train-captioner", help="fit a PrefixCaptioner with DistributedDataParallel")
    t.add_argument("--embeddings", required=True, help=".npy file, (N, D) float")
    t.add_argument("--captions", required=True, help="JSON file: a list of N caption strings")
    t.add_argument("--out", required=True, help="folder for the captioner (PrefixCaptioner.load reads it)")
    t.add_argument(
        "--lm",
        default="scratch",
        help="captioner LM: scratch | tiny-random | smollm2-135m | hub name | folder",
    )
    t.add_argument("--epochs", type=int, default=5, help="training epochs (default 5)")
    t.add_argument("--batch-size", type=int, default=None, help="global batch (split over the processes)")
    t.add_argument("--seed", type=int, default=0, help="seed of the batch order and noise (default 0)")
    t.add_argument(
        "--report", default=None, help="JSON file: world size, final loss, each rank's weight hash"
    )
    return p


def _extract(args, rank: int, world: int, device: str) -> None:
    import time

    from dlink import experiment
    from dlink.encoders.registry import load_encoder
    from dlink.profiles import resolve_params

    params = resolve_params(profile="smoke", dataset=args.dataset, encoder="laion-clap", clap_ckpt=args.clap_ckpt,
                       data_root=args.data_root, clap_tokenizer=args.clap_tokenizer,
                       clap_amodel=args.clap_amodel, clap_fusion=args.clap_fusion)  # fmt: skip
    frames = experiment.splits(params)
    opts = params.encoder_options
    enc = load_encoder("laion-clap", checkpoint=opts.checkpoint, device=device, **opts.loader_kwargs())
    for split in args.splits.split(","):
        if split not in frames:
            raise ValueError(f"--splits: unknown split {split!r}; choose from train, val, test")
        t0 = time.perf_counter()
        emb = extract_split(enc, frames[split], rank, world, args.batch_size, args.workers)
        if rank == 0:
            print(f"{split}: audio {emb['audio'].shape}, text {emb['text'].shape} in "
                  f"{time.perf_counter() - t0:.1f} s on {world} process(es) -> {paths.CACHE / 'embeddings'}")  # fmt: skip


def _train_captioner(args, rank: int, world: int, device: str) -> None:
    from dlink.captioning.captioner import CaptionerConfig

    embeddings = np.load(args.embeddings, allow_pickle=False)
    captions = json.loads(Path(args.captions).read_text())
    if not (isinstance(captions, list) and all(isinstance(c, str) for c in captions)):
        raise ValueError(f"--captions {Path(args.captions).resolve()} must hold a JSON list of strings")
    if embeddings.ndim != 2 or len(embeddings) != len(captions):
        raise ValueError(f"--embeddings {args.embeddings} has shape {embeddings.shape}; expected ({len(captions)}, D), "
                         f"one row per caption in {args.captions}")  # fmt: skip
    cfg = dict(lm=args.lm, epochs=args.epochs, seed=args.seed)
    if args.batch_size:
        cfg["batch_size"] = args.batch_size
    cap = train_captioner(embeddings, captions, CaptionerConfig(**cfg), device=device)
    digest = weights_sha256(cap)
    digests = [None] * world
    if world > 1:
        _dist().all_gather_object(digests, digest)
    else:
        digests = [digest]
    if rank == 0:
        cap.save(args.out)
        loss = cap.history["train_loss"][-1]
        print(f"captioner fitted by {world} process(es): final train loss {loss:.4f} -> {args.out}")
        if args.report:
            write_json(args.report, {"world_size": world, "final_loss": loss, "weights_sha256": digests})
        if len(set(digests)) != 1:
            raise RuntimeError(f"the ranks' captioner weights differ after the fit: {digests}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    rank, world, device = init()
    try:
        (_extract if args.command == "extract" else _train_captioner)(args, rank, world, device)
    finally:
        if _dist() is not None:
            _dist().destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
