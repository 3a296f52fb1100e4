"""Run profiles (smoke | default | full | llm) and the validation of a notebook's parameters.

Every notebook starts with a papermill parameters cell and then calls `resolve_params`, so a
bad value fails in the first second with one message that lists everything wrong, instead of
an hour later deep inside training. A profile is the one place that says how big a run is:
the notebooks read sizes, epochs and sweep grids from it and hard-code none of them.

    profile = None; dataset = "embedded"; encoder = "embedded"; data_root = None; seeds = None
    options = {}  # every other resolve_params argument: device, lm, clap_ckpt, clap_tokenizer, ...
    ...
    params = dlink.resolve_params(profile=profile, dataset=dataset, encoder=encoder,
                                  data_root=data_root, seeds=seeds, **options)
    params.bridge_epochs, params.seeds, params.device  # profile fields are readable on params directly

Paths (clap_ckpt, data_root, clap_tokenizer, a local lm folder) are resolved against the
current directory here; `python -m dlink.runner.pipeline` / run_all.sh first rewrite them against the
directory the user ran the command from (`resolve_user_paths`), so a relative path means what
the user meant even though notebooks execute inside notebooks/.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlink.captioning.lm import folder_problem
from dlink.checks import absolute_path, hub_online, path_param
from dlink.device import resolve_device, set_torch_threads
from dlink.encoders.registry import ENCODERS, option_classes, option_params

DATASETS = ("embedded", "audiocaps", "clotho")
PROFILE_ENV = "DLINK_PROFILE"
# Set by run_all.sh before it changes into the repository: the directory the user typed the
# command in, against which every relative path the user passes is resolved.
USER_CWD_ENV = "DLINK_USER_CWD"
# plus the encoders' path options (clap_ckpt, clap_tokenizer: `encoder_path_params`) and `lm`
# when it names a local folder
PATH_PARAMS = ("data_root",)
# Decoders the captioner knows without a folder or the hub (dlink.captioning.captioner / dlink.captioning.lm)
BUILTIN_LMS = ("scratch", "tiny-random", "smollm2-135m")


# CapDec's published noise: variance 0.016 per dimension on the unit text embedding (std 0.126; at
# D = 512 a noise vector of norm ~2.9 against the unit signal, renormalised). Swept on validation too.
CAPDEC_NOISE_VARIANCE = 0.016


# The diffusion grid of a profile that tries a single setting (the llm profile, where every setting
# tried costs an LLM captioning of the validation split): a mid-chain start k* = 500 with 5 DDIM
# steps, a point of the default profile's grid, and the paper's 3 residual blocks. The bridges' own
# defaults (SDEditConfig: k* = 300, S = 1) matter only for a bridge used outside a run.
ONE_SETTING: dict[str, tuple[int, ...]] = {"start_steps": (500,), "ddim_steps": (5,), "n_blocks": (3,)}


@dataclass(frozen=True)
class Profile:
    """How big a run is. `None` in an *_items field means "all items of the split".

    Sweep grids are tuples so a Profile stays hashable and immutable.
    """

    name: str
    dataset_size: str  # embedded dataset size: "smoke" | "default"
    n_seeds: int  # seeds 0..n_seeds-1 unless `seeds` is given
    clap_epochs: int  # embedded CLAP (dlink.encoders.embedded_clap) training epochs
    bridge_epochs: int  # at most; early stopping on the validation loss ends most fits sooner
    bridge_batch_size: int
    lm: str  # captioner decoder: "scratch" (trained from scratch) | "tiny-random" | "smollm2-135m" | a hub LM
    captioner_epochs: int
    eval_items: int | None  # None = every test scene
    beams: int  # beam width when decoding captions
    umap_points: int  # points per modality in the UMAP figures
    caption_seeds: int = 1  # the captioning notebooks use the first caption_seeds of the seeds
    # further CaptionerConfig fields for this profile's captioners, as (name, value) pairs (a tuple,
    # so the profile stays hashable); the rest are CaptionerConfig's defaults
    captioner: tuple[tuple[str, Any], ...] = ()
    bridge_patience: int = 3  # epochs without a better validation loss before a bridge fit stops
    # share of the training scenes the embedded CLAP's heads are trained on; bridges and captioners
    # are fitted on the rest ("fit" scenes), so no stage is fitted on pairs an earlier stage saw
    encoder_share: float = 0.5
    # CapDec noise variances tried on the validation split (with CapDec's published setting)
    noise_variances: tuple[float, ...] = (CAPDEC_NOISE_VARIANCE,)
    cross_fit_folds: int = 2  # supervised AAC: K-fold cross-fitting of the bridge over the fit scenes
    # supervised AAC: further arms with other K (each K costs K bridge fits per seed)
    extra_cross_fit_folds: tuple[int, ...] = ()
    # the diffusion grid: validation tries every start step k* (of T = 1000) x DDIM steps S (the
    # inference settings), notebook 07 each block count of the denoiser; ONE_SETTING when not given
    start_steps: tuple[int, ...] = ONE_SETTING["start_steps"]
    ddim_steps: tuple[int, ...] = ONE_SETTING["ddim_steps"]
    n_blocks: tuple[int, ...] = ONE_SETTING["n_blocks"]
    device: str = "auto"
    # the notebooks a plain `run_all.sh --profile NAME` runs (numbers, as --only takes them); None = all
    notebooks: tuple[str, ...] | None = None

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
    # (SmolLM2-135M as a frozen prefix LM trains ~7 samples/s here, so a run affords too few
    # captions for it: results/decoder_comparison.md, on validation), all test scenes,
    # 3 seeds everywhere.
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
        noise_variances=(0.004, CAPDEC_NOISE_VARIANCE, 0.064),
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
        noise_variances=(0.001, 0.004, CAPDEC_NOISE_VARIANCE, 0.064),
        extra_cross_fit_folds=(5,),
        start_steps=(100, 200, 300, 400, 500, 600, 700, 800, 900),
        ddim_steps=(1, 2, 5, 10, 20, 50),
        n_blocks=(1, 2, 3, 4, 6),
    ),
}

# The paper's kind of decoder on a CPU: the frozen SmolLM2-135M prefix captioner trained on every
# fit caption, then notebook 05's zero-shot table (results/llm/; notebooks 01-04 make what it
# needs). Data, encoder heads and bridge training as in the default profile (its seed 0); one
# seed and one-point diffusion grids, because every inference setting tried is captioned by the
# LLM on validation. The captioner's fit resumes after its last finished epoch.
PROFILES["llm"] = dataclasses.replace(
    PROFILES["default"],
    name="llm",
    n_seeds=1,
    lm="smollm2-135m",
    captioner_epochs=2,
    # LoRA on the LM's attention and 32 captions a step, chosen on validation (benchmarks/llm_curve.py):
    # the frozen LM with 128 a step reached text-oracle CIDEr-D 0.41 in 2 epochs, with 32 a step 0.65
    # (results/llm/curve.md), with LoRA and 32 a step 1.09 after one epoch (results/llm/curve_lora.md)
    captioner=(("lora", True), ("batch_size", 32)),
    caption_seeds=1,
    noise_variances=(CAPDEC_NOISE_VARIANCE,),
    **ONE_SETTING,
    notebooks=("01", "02", "03", "04", "05"),
)


@dataclass(frozen=True)
class Params:
    """A notebook's validated parameters plus its profile.

    Profile fields read through: `params.bridge_epochs` is `params.profile.bridge_epochs`.
    `device` is resolved ("cpu" / "cuda" / "cuda:1" / "mps", never "auto").
    """

    profile: Profile
    dataset: str
    encoder: str
    data_root: Path | None
    device: str
    seeds: tuple[int, ...]
    # the encoder's own options (its registry entry's options class: `LaionClapOptions` for
    # "laion-clap"); None for an encoder that takes none, such as "embedded"
    encoder_options: Any = None
    audiocaps_version: str | None = None  # v1 | v2 | None (v1, warning when v2 is there too)
    # share of a split's clips whose audio may be missing or unreadable (None: dlink.data.MAX_MISSING)
    max_missing: float | None = None

    @property
    def label(self) -> str:
        """The folder name of this run's outputs under results/, figures/ and runs/: the profile's
        name plus whatever differs from that profile's own run (dataset, encoder, seeds, decoder).
        So the canonical default run, whose tables are committed and quoted, is the only one named
        "default" (and writes results/ itself): `-p seeds "[0]"` writes results/default-seeds-0/."""
        parts = [self.profile.name]
        parts += [v for v in (self.dataset, self.encoder) if v != "embedded"]
        if self.seeds != tuple(range(self.profile.n_seeds)):
            parts.append("seeds-" + "-".join(str(s) for s in self.seeds))
        own_lm = PROFILES[self.profile.name].lm if self.profile.name in PROFILES else self.profile.lm
        if self.profile.lm != own_lm:
            parts.append(
                "lm-" + "".join(c if c.isalnum() or c in "-." else "_" for c in self.profile.lm)[-40:]
            )
        return "-".join(parts)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails, i.e. for profile fields.
        if name != "profile" and name in Profile.__dataclass_fields__:
            return getattr(self.profile, name)
        raise AttributeError(f"Params has no attribute {name!r}")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for writing next to results); the encoder's options under the
        notebook parameter names that set them."""
        out = {
            "profile": self.profile.as_dict(),
            "dataset": self.dataset,
            "encoder": self.encoder,
            "data_root": None if self.data_root is None else str(self.data_root),
            "device": self.device,
            "seeds": list(self.seeds),
            "audiocaps_version": self.audiocaps_version,
            "max_missing": self.max_missing,
        }
        for cls in option_classes():  # every encoder's parameters, the unused ones as not given
            given = self.encoder_options if isinstance(self.encoder_options, cls) else cls()
            out.update(given.as_params())
        return {k: out[k] for k in sorted(out, key=lambda k: _PARAM_ORDER.get(k, len(_PARAM_ORDER)))}

    def __str__(self) -> str:
        p = self.profile
        return (
            f"profile={p.name} dataset={self.dataset}({p.dataset_size}) encoder={self.encoder} "
            f"device={self.device} seeds={list(self.seeds)} lm={p.lm}"
        )


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


def user_cwd() -> Path:
    """The directory the user ran the command from ($DLINK_USER_CWD when run_all.sh set it)."""
    return Path(os.environ.get(USER_CWD_ENV) or os.getcwd())


def _is_local_lm(lm: str, base: Path | None = None) -> bool:
    """A local folder rather than a hub name ("org/name"): written as a path, or existing."""
    if lm in BUILTIN_LMS:
        return False
    return lm.startswith(("/", "./", "../", "~", ".\\", "..\\")) or absolute_path(lm, base).exists()


def encoder_path_params() -> tuple[str, ...]:
    """The registered encoders' options that are paths (clap_ckpt, clap_tokenizer)."""
    return tuple(name for cls in option_classes() for name in cls.PATH_PARAMS)


def resolve_user_paths(params: dict[str, Any], base: str | os.PathLike | None = None) -> dict[str, Any]:
    """`params` with every user path made absolute against `base` (default: `user_cwd()`).

    Called by the pipeline before any notebook runs: notebooks execute inside notebooks/, where a
    relative path the user typed would point somewhere else.
    """
    base = Path(base) if base is not None else user_cwd()
    out = dict(params)
    for key in PATH_PARAMS + encoder_path_params():
        if isinstance(out.get(key), (str, os.PathLike)):
            out[key] = str(absolute_path(out[key], base))
    if isinstance(out.get("lm"), str) and _is_local_lm(out["lm"], base):
        out["lm"] = str(absolute_path(out["lm"], base))
    return out


def _check_captioner(prof: Profile, lm: str | None, errors: list[str]) -> None:
    """The profile's captioner fields must suit the LM that will use them (`lm` overrides the profile's)."""
    if not prof.captioner:
        return
    from dlink.captioning.captioner import CaptionerConfig

    try:
        CaptionerConfig(lm=lm or prof.lm, **dict(prof.captioner))
    except (TypeError, ValueError) as e:
        fields = ", ".join(f"{k}={v!r}" for k, v in prof.captioner)
        errors.append(
            f"the {prof.name} profile's captioner settings ({fields}) do not suit lm={lm or prof.lm!r}: {e}; "
            "use a profile made for that decoder (the default profile trains the scratch decoder)"
        )


def _check_lm(lm: Any, errors: list[str]) -> str | None:
    """The captioner's LM: a built-in name, a local causal-LM folder, or a hub name."""
    if lm is None:
        return None
    if not isinstance(lm, str) or not lm.strip():
        errors.append(
            f"lm must be None (the profile's), {', '.join(BUILTIN_LMS)}, a hub name or a folder; got {lm!r}"
        )
        return None
    if lm in BUILTIN_LMS:
        return lm
    if _is_local_lm(lm):
        folder = absolute_path(lm)
        problem = folder_problem(folder)
        if problem:
            errors.append(f"lm={lm!r}: {problem}")
        return str(folder)
    if not hub_online():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = isinstance(try_to_load_from_cache(lm, "config.json"), str)
        except Exception:  # a malformed repo id
            cached = False
        if not cached:
            errors.append(
                f"lm={lm!r} is a hub name, but the hub is not reachable and it is not in the local cache; "
                f"pass a local folder (save_pretrained of the model and its tokenizer) or one of {', '.join(BUILTIN_LMS)}"
            )
    return lm


def resolve_params(
    profile: str | Profile | None = None,
    dataset: str = "embedded",
    encoder: str = "embedded",
    data_root: str | os.PathLike | None = None,
    device: str = "auto",
    seeds: list[int] | tuple[int, ...] | None = None,
    lm: str | None = None,
    audiocaps_version: str | None = None,
    max_missing: float | None = None,
    **unknown: Any,
) -> Params:
    """Validate a notebook's parameters all at once and return them with the profile.

    Raises one ValueError listing every problem (unknown profile/dataset/encoder with the
    valid choices, missing checkpoint or data folder with how to get it, bad seeds, unknown
    parameter names - papermill itself only warns about those). Relative paths are taken
    against the current directory; errors show the absolute path that was tried.
    `lm` (None = the profile's decoder) replaces the profile's `lm`. `max_missing` (AudioCaps /
    Clotho; None = dlink.data.MAX_MISSING): the share of a split's clips whose audio may be missing
    or unreadable before loading stops. The encoder's own options come as further keyword arguments,
    named by its options class (`dlink.encoders.registry`; LAION-CLAP's: clap_ckpt, clap_tokenizer,
    clap_amodel, clap_fusion).
    """
    errors: list[str] = []
    # the registered encoders' options (clap_ckpt, clap_tokenizer, clap_amodel, clap_fusion, ...)
    encoder_params = {name: unknown.pop(name) for name in list(unknown) if name in option_params()}
    if unknown:
        valid = [name for name in _SIGNATURE if name != "unknown"] + list(option_params())
        errors.append(f"unknown parameter(s) {', '.join(sorted(unknown))}; valid: {', '.join(valid)}")
    try:
        prof = get_profile(profile)
    except ValueError as e:
        errors.append(str(e))
        prof = PROFILES["default"]  # keep going so every other problem is reported too

    root = _check_dataset(dataset, data_root, errors)
    if audiocaps_version is not None and (audiocaps_version not in ("v1", "v2") or dataset != "audiocaps"):
        errors.append(
            f"audiocaps_version={audiocaps_version!r}: expected 'v1' (AudioCaps 1) or 'v2' (AudioCaps 2.0), "
            "with dataset='audiocaps' only (None = v1)"
        )
    if max_missing is not None:
        from dlink.data import check_max_missing  # late: resolving parameters stays light otherwise

        try:
            check_max_missing(max_missing)
        except ValueError as e:
            errors.append(str(e))
        if dataset not in ("audiocaps", "clotho"):
            errors.append(
                f"max_missing={max_missing!r} applies to dataset='audiocaps' or 'clotho' (their audio "
                f"can be missing); dataset={dataset!r} has none to skip"
            )
    encoder_options = _check_encoder(encoder, encoder_params, errors)
    lm_value = _check_lm(lm, errors)

    _check_captioner(prof, lm_value, errors)
    seed_tuple = _check_seeds(seeds, prof.n_seeds, errors)
    resolved_device = _check_device(device, prof, errors)

    if errors:
        raise ValueError("invalid notebook parameters:\n  - " + "\n  - ".join(errors))
    if lm_value is not None and lm_value != prof.lm:
        prof = dataclasses.replace(prof, lm=lm_value)  # the captioner reads params.profile.lm
    set_torch_threads()  # every notebook starts here: size torch's threads to the CPUs it may use
    return Params(
        profile=prof,
        dataset=dataset,
        encoder=encoder,
        data_root=root,
        device=resolved_device,
        seeds=seed_tuple,
        encoder_options=encoder_options,
        audiocaps_version=audiocaps_version,
        max_missing=max_missing,
    )


_SIGNATURE = tuple(inspect.signature(resolve_params).parameters)
# Params.as_dict lists the parameters in this order (then those of an encoder registered later)
_PARAM_ORDER = {name: i for i, name in enumerate(_SIGNATURE + tuple(option_params()))}


def _check_dataset(dataset: str, data_root, errors: list[str]) -> Path | None:
    """The dataset name and its data_root (absolute; None for the embedded dataset)."""
    if dataset not in DATASETS:
        errors.append(f"dataset={dataset!r} is not known; valid: {', '.join(DATASETS)}")
    root = None
    data_root = path_param("data_root", data_root, errors)
    if dataset in ("audiocaps", "clotho"):
        if data_root is None:
            errors.append(
                f"dataset={dataset!r} needs data_root, the folder holding its audio and caption CSVs "
                f"(download {dataset} yourself; see data/README.md for the expected layout), "
                f"e.g. data_root='/data/{dataset}'"
            )
        else:
            root = absolute_path(data_root)
            if not root.is_dir():
                errors.append(
                    f"data_root={str(data_root)!r} -> {root} is not a folder; pass the {dataset} folder"
                )
    elif data_root is not None and dataset in DATASETS:
        errors.append(
            f"data_root is only used with dataset='audiocaps' or 'clotho', not {dataset!r}; drop it"
        )
    return root


def _check_encoder(encoder: str, values: dict[str, Any], errors: list[str]):
    """The encoder name and its options (built by its entry's options class; None if it takes none).

    A parameter of another encoder's options is refused when that class says it was given."""
    entry = ENCODERS.get(encoder)
    if entry is None:
        errors.append(f"encoder={encoder!r} is not known; valid: {', '.join(ENCODERS)}")
    options = None
    for cls, owners in option_classes().items():
        given = {name: values[name] for name in cls.PARAMS if name in values}
        if entry is not None and cls is entry.options:
            options = cls.from_params(errors, **given)
            continue
        for name in cls.unused_params(errors, **given):
            used_with = " or ".join(f"encoder={owner!r}" for owner in owners)
            errors.append(f"{name} is only used with {used_with}, not {encoder!r}; drop it")
    return options


def _check_device(device: str, prof: Profile, errors: list[str]) -> str:
    try:
        # "auto" defers to the profile, which may pin a device (all shipped profiles say "auto")
        return resolve_device(prof.device if device == "auto" else device)
    except ValueError as e:
        errors.append(str(e))
        return device
