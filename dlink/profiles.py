"""Run profiles (smoke | default | full) and the validation of a notebook's parameters.

Every notebook starts with a papermill parameters cell and then calls `resolve_params`, so a
bad value fails in the first second with one message that lists everything wrong, instead of
an hour later deep inside training. A profile is the one place that says how big a run is:
the notebooks read sizes, epochs and sweep grids from it and hard-code none of them.

    profile = None  # smoke | default | full; None = $DLINK_PROFILE or default
    dataset = "embedded"; encoder = "embedded"; clap_ckpt = None; data_root = None
    device = "auto"; seeds = None
    ...
    P = dlink.resolve_params(profile=profile, dataset=dataset, encoder=encoder,
                             clap_ckpt=clap_ckpt, data_root=data_root, device=device, seeds=seeds)
    P.bridge_epochs, P.seeds, P.device  # profile fields are readable on P directly
"""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATASETS = ("embedded", "audiocaps", "clotho")
ENCODERS = ("embedded", "laion-clap")
PROFILE_ENV = "DLINK_PROFILE"
# Where the pretrained LAION-CLAP weights live (the paper's encoder); our machines cannot fetch them.
LAION_CKPT_URL = "https://huggingface.co/lukewys/laion_clap/resolve/main/630k-audioset-best.pt"


@dataclass(frozen=True)
class Profile:
    """How big a run is. `None` in an *_items field means "all items of the split".

    Sweep grids are tuples so a Profile stays hashable and immutable.
    """

    name: str
    dataset_size: str  # embedded dataset size: "smoke" | "default"
    n_seeds: int  # seeds 0..n_seeds-1 unless `seeds` is given
    clap_epochs: int  # embedded CLAP (dlink.embedded_clap) training epochs
    bridge_epochs: int  # at most; early stopping on the validation loss ends most fits sooner
    bridge_batch_size: int
    lm: str  # captioner decoder: "scratch" (trained from scratch) | "tiny-random" | "smollm2-135m" | a hub LM
    captioner_epochs: int
    eval_items: int | None  # None = every test scene
    beams: int  # beam width when decoding captions
    umap_points: int  # points per modality in the UMAP figures
    caption_seeds: int = 1  # the captioning notebooks use the first caption_seeds of the seeds
    bridge_patience: int = 3  # epochs without a better validation loss before a bridge fit stops
    # share of the training scenes the embedded CLAP's heads are trained on; bridges and captioners
    # are fitted on the rest ("fit" scenes), so no stage is fitted on pairs an earlier stage saw
    encoder_share: float = 0.5
    # CapDec noise variances tried on the validation split (0.016 is CapDec's published setting)
    noise_variances: tuple[float, ...] = (0.016,)
    cross_fit_folds: int = 2  # supervised AAC: K-fold cross-fitting of the bridge over the fit scenes
    start_steps: tuple[int, ...] = (500,)  # ablation: SDEdit start step k* (of T = 1000)
    ddim_steps: tuple[int, ...] = (5,)  # ablation: deterministic DDIM steps from k* to 0
    n_blocks: tuple[int, ...] = (3,)  # ablation: residual MLP blocks in the denoiser
    device: str = "auto"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    # Minutes on a laptop CPU: proves every notebook runs end to end (tests, CI, nbval).
    # The numbers it produces mean nothing.
    "smoke": Profile(
        name="smoke",
        dataset_size="smoke",
        n_seeds=1,
        clap_epochs=5,
        bridge_epochs=2,
        bridge_batch_size=64,
        lm="scratch",
        captioner_epochs=1,
        eval_items=8,
        beams=2,
        umap_points=100,
        caption_seeds=1,
        start_steps=(300, 500),
        ddim_steps=(1, 2),
        n_blocks=(1, 3),
    ),
    # The artifact's real setting on a 2-core CPU: real pretrained towers, the scratch decoder
    # (SmolLM2-135M as a frozen prefix LM trains ~7 samples/s here: 1,280 captions in the old
    # budget left its text oracle at CIDEr-D 0.055), all test scenes, 3 seeds everywhere.
    "default": Profile(
        name="default",
        dataset_size="default",
        n_seeds=3,
        clap_epochs=60,
        bridge_epochs=20,
        bridge_batch_size=256,
        lm="scratch",
        captioner_epochs=5,
        eval_items=None,
        beams=3,
        umap_points=300,
        caption_seeds=3,
        noise_variances=(0.004, 0.016, 0.064),
        start_steps=(100, 300, 500, 700),
        ddim_steps=(1, 5, 20),
        n_blocks=(1, 3, 5),
    ),
    # For a GPU: 3 seeds everywhere, longer training, all test items, 4 beams, full sweeps.
    "full": Profile(
        name="full",
        dataset_size="default",
        n_seeds=3,
        clap_epochs=300,
        bridge_epochs=60,
        bridge_batch_size=256,
        lm="smollm2-135m",
        captioner_epochs=3,
        eval_items=None,
        beams=4,
        umap_points=300,
        caption_seeds=3,
        noise_variances=(0.001, 0.004, 0.016, 0.064),
        start_steps=(100, 200, 300, 400, 500, 600, 700, 800, 900),
        ddim_steps=(1, 2, 5, 10, 20, 50),
        n_blocks=(1, 2, 3, 4, 6),
    ),
}


@dataclass(frozen=True)
class Params:
    """A notebook's validated parameters plus its profile.

    Profile fields read through: `P.bridge_epochs` is `P.profile.bridge_epochs`.
    `device` is resolved ("cpu" / "cuda" / "cuda:1" / "mps", never "auto").
    """

    profile: Profile
    dataset: str
    encoder: str
    clap_ckpt: Path | None
    data_root: Path | None
    device: str
    seeds: tuple[int, ...]

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails, i.e. for profile fields.
        if name != "profile" and name in Profile.__dataclass_fields__:
            return getattr(self.profile, name)
        raise AttributeError(f"Params has no attribute {name!r}")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for writing next to results)."""
        return {
            "profile": self.profile.as_dict(),
            "dataset": self.dataset,
            "encoder": self.encoder,
            "clap_ckpt": None if self.clap_ckpt is None else str(self.clap_ckpt),
            "data_root": None if self.data_root is None else str(self.data_root),
            "device": self.device,
            "seeds": list(self.seeds),
        }

    def __str__(self) -> str:
        p = self.profile
        return (
            f"profile={p.name} dataset={self.dataset}({p.dataset_size}) encoder={self.encoder} "
            f"device={self.device} seeds={list(self.seeds)} lm={p.lm}"
        )


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' if torch sees a GPU else 'cpu'; an explicit device is checked."""
    if not isinstance(device, str) or not device:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got {device!r}")
    import torch  # late: resolving profiles must not import torch unless a device is asked for

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but torch sees no CUDA GPU; use device='auto' or 'cpu'")
        idx = device.partition(":")[2]
        if idx and (not idx.isdigit() or int(idx) >= torch.cuda.device_count()):
            raise ValueError(
                f"device={device!r}: torch sees {torch.cuda.device_count()} GPU(s) (cuda:0..); fix the index"
            )
        return device
    if device == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError("device='mps' but MPS is not available here; use device='auto' or 'cpu'")
        return device
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got {device!r}")


def _online(host: str = "huggingface.co", timeout: float = 2.0) -> bool:
    """True when the model hub can be reached (so laion_clap can download its default weights)."""
    if any(
        os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "DLINK_OFFLINE")
    ):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def get_profile(profile: str | Profile | None = None) -> Profile:
    """A Profile by name; None -> $DLINK_PROFILE, else 'default'."""
    if isinstance(profile, Profile):
        return profile
    source = "profile"
    if profile is None:
        profile, source = os.environ.get(PROFILE_ENV) or "default", f"${PROFILE_ENV}"
    if profile not in PROFILES:
        raise ValueError(f"{source}={profile!r} is not a profile; valid: {', '.join(PROFILES)}")
    return PROFILES[profile]


_SEED_LIMIT = 2**32  # numpy's legacy seeding and some samplers take 32-bit seeds only


def _check_seeds(seeds: Any, n_seeds: int, errors: list[str]) -> tuple[int, ...]:
    if seeds is None:
        return tuple(range(n_seeds))
    ok = (
        isinstance(seeds, (list, tuple))
        and len(seeds) > 0
        and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < _SEED_LIMIT for s in seeds)
    )
    if not ok:
        errors.append(
            f"seeds must be None (use the profile's {n_seeds}) or a non-empty list of ints in "
            f"[0, 2**32), e.g. [0, 1, 2]; got {seeds!r}"
        )
        return ()
    if len(set(seeds)) != len(seeds):
        errors.append(f"seeds has duplicates: {list(seeds)}")
    return tuple(seeds)


def resolve_params(
    profile: str | Profile | None = None,
    dataset: str = "embedded",
    encoder: str = "embedded",
    clap_ckpt: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    device: str = "auto",
    seeds: list[int] | tuple[int, ...] | None = None,
    **unknown: Any,
) -> Params:
    """Validate a notebook's parameters all at once and return them with the profile.

    Raises one ValueError listing every problem (unknown profile/dataset/encoder with the
    valid choices, missing checkpoint or data folder with how to get it, bad seeds, unknown
    parameter names - papermill itself only warns about those).
    """
    errors: list[str] = []
    if unknown:
        errors.append(
            f"unknown parameter(s) {', '.join(sorted(unknown))}; valid: profile, dataset, encoder, "
            "clap_ckpt, data_root, device, seeds"
        )
    try:
        prof = get_profile(profile)
    except ValueError as e:
        errors.append(str(e))
        prof = PROFILES["default"]  # keep going so every other problem is reported too

    if dataset not in DATASETS:
        errors.append(f"dataset={dataset!r} is not known; valid: {', '.join(DATASETS)}")
    root = None
    if dataset in ("audiocaps", "clotho"):
        if data_root is None:
            errors.append(
                f"dataset={dataset!r} needs data_root, the folder holding its audio and caption CSVs "
                f"(download {dataset} yourself; see data/README.md for the expected layout), "
                f"e.g. data_root='/data/{dataset}'"
            )
        else:
            root = Path(data_root).expanduser()
            if not root.is_dir():
                errors.append(f"data_root={str(data_root)!r} is not a folder; pass the {dataset} folder")
    elif data_root is not None and dataset in DATASETS:
        errors.append(
            f"data_root is only used with dataset='audiocaps' or 'clotho', not {dataset!r}; drop it"
        )

    if encoder not in ENCODERS:
        errors.append(f"encoder={encoder!r} is not known; valid: {', '.join(ENCODERS)}")
    ckpt = None
    if clap_ckpt is not None:
        ckpt = Path(clap_ckpt).expanduser()
        if encoder != "laion-clap":
            errors.append(f"clap_ckpt is only used with encoder='laion-clap', not {encoder!r}; drop it")
        elif not ckpt.is_file():
            errors.append(f"clap_ckpt={str(clap_ckpt)!r} does not exist; download it from {LAION_CKPT_URL}")
    elif encoder == "laion-clap" and not _online():
        errors.append(
            "encoder='laion-clap' without clap_ckpt needs the model hub, which is not reachable here: "
            f"download 630k-audioset-best.pt on a machine with internet ({LAION_CKPT_URL}) "
            "and pass clap_ckpt='/path/to/630k-audioset-best.pt'"
        )

    seed_tuple = _check_seeds(seeds, prof.n_seeds, errors)
    resolved_device = device
    try:
        # "auto" defers to the profile, which may pin a device (all shipped profiles say "auto")
        resolved_device = resolve_device(prof.device if device == "auto" else device)
    except ValueError as e:
        errors.append(str(e))

    if errors:
        raise ValueError("invalid notebook parameters:\n  - " + "\n  - ".join(errors))
    return Params(
        profile=prof,
        dataset=dataset,
        encoder=encoder,
        clap_ckpt=ckpt,
        data_root=root,
        device=resolved_device,
        seeds=seed_tuple,
    )
