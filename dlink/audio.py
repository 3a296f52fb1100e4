"""Reading audio files: `load_audio` (any rate and channel count in, mono float32 at the rate asked
for out, with clear errors for what no encoder can use), `unreadable` (why a file cannot be a
clip, without raising) and `resample`. The dataset builders (`dlink.data`) and the encoders read audio here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

SAMPLE_RATE = 32000  # the embedded dataset's rate; encoders ask for their own
MIN_SECONDS = 0.1  # below this an input clip is not a sound; encoders pad longer short clips themselves


def load_audio(path, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as (n,) float32 mono at `sr` Hz.

    Stereo / multichannel is averaged to mono (what CLAP-style encoders expect); another
    sample rate is resampled with soxr. Raises FileNotFoundError for a missing file and
    ValueError for an unreadable file, NaN/inf samples, silence (peak < 1e-5) or a clip
    shorter than 0.1 s (longer short clips are fine: encoders pad to their window).
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file {path} does not exist")
    try:
        x, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError variants
        raise ValueError(
            f"cannot decode audio file {path} ({e}); re-encode it as wav/flac/ogg, e.g. "
            f"`ffmpeg -i {path.name} -ac 1 -ar {sr} out.wav`"
        ) from e
    declared = wav_declared_frames(path)
    if declared is not None and declared > x.shape[0]:
        warnings.warn(
            f"audio file {path} is truncated: its header declares {declared / file_sr:.2f} s, the file "
            f"holds {x.shape[0] / file_sr:.2f} s; it is used as the shorter clip (re-download or re-export it)",
            stacklevel=2,
        )
    return check_and_resample(x.mean(axis=1), file_sr, sr, str(path))


def wav_declared_frames(path: Path) -> int | None:
    """Frames a RIFF/WAVE header declares (data chunk size / block align), None for other files.
    libsndfile reads a truncated WAV as a shorter one without a word; this lets load_audio say so."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block = None
        while len(chunk := f.read(8)) == 8:
            cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if cid == b"fmt ":
                fmt = f.read(size + size % 2)
                block = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else None
            elif cid == b"data":
                # 0 or 0xFFFFFFFF: a streamed header that never learnt its size
                return size // block if block and 0 < size < 0xFFFFFFFF else None
            else:
                f.seek(size + size % 2, 1)
    return None


def check_and_resample(
    x: np.ndarray, file_sr: int, sr: int, name: str, min_s: float = MIN_SECONDS
) -> np.ndarray:
    if not np.isfinite(x).all():
        raise ValueError(f"audio {name} contains NaN or inf samples; the file is corrupt, re-export it")
    if x.shape[0] < min_s * file_sr:
        raise ValueError(f"audio {name} is {x.shape[0] / file_sr:.3f} s long, shorter than {min_s} s")
    if float(np.abs(x).max()) < 1e-5:
        raise ValueError(f"audio {name} is silent (peak < 1e-5); check the recording or its gain")
    return np.ascontiguousarray(resample(x, file_sr, sr), dtype=np.float32)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """`x` at `sr_out` Hz (soxr, high quality): the one resampler of every clip, so a clip read by
    the dataset builder, the session detector or an encoder is resampled alike."""
    if sr_in == sr_out:
        return x
    import soxr

    return soxr.resample(x, sr_in, sr_out, quality="HQ")


def unreadable(path: Path) -> str | None:
    """Why `path` cannot be used as a clip ("missing", "undecodable: ..."), or None. The whole file
    is decoded at its own rate and given `load_audio`'s checks (finite, long enough, not silent), so
    a file with a valid header but damaged samples is left out here, with the missing ones, instead
    of stopping feature extraction half way. That costs one decode per file (`dlink.data` keeps
    the answer for a split until its files change)."""
    if not path.is_file():
        return "missing"
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError variants
        return f"undecodable: {e}"
    if info.frames <= 0:
        return "undecodable: no samples"
    try:
        with warnings.catch_warnings():
            # a truncated WAV is still a clip: load_audio warns when extraction reads it
            warnings.simplefilter("ignore")
            load_audio(path, sr=info.samplerate)
    except (ValueError, OSError, MemoryError) as e:
        return f"undecodable: {e}"
    return None
