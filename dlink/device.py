"""Where torch computes: the package's one device resolver."""

from __future__ import annotations


def resolve_device(device: str | None = "auto") -> str:
    """'auto' (or None) -> 'cuda' if torch sees a GPU else 'cpu'; an explicit device is checked
    (ValueError for a name torch does not know, such as 'gpu0', or a GPU that is not there)."""
    device = "auto" if device is None else device if isinstance(device, str) else str(device)
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


def usable_cpus() -> int:
    """CPUs this process may actually run on: its affinity mask, capped by the cgroup CPU quota
    (v2 `cpu.max`, v1 `cpu.cfs_quota_us / cpu.cfs_period_us`), rounded up, at least 1.
    `os.cpu_count()` counts the host's cores, which a container or `taskset` may not grant."""
    import math
    import os

    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS / Windows have no affinity call
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _cgroup_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs granted by the cgroup quota, or None when there is none (or no cgroup to read)."""
    from pathlib import Path

    def read(path):
        try:
            return Path(path).read_text().split()
        except (OSError, ValueError):
            return None

    v2 = read(f"{root}/cpu.max")  # "max 100000" or "200000 100000"
    if v2 and len(v2) == 2 and v2[0] != "max":
        try:
            return int(v2[0]) / int(v2[1])
        except (ValueError, ZeroDivisionError):
            return None
    for base in (f"{root}/cpu", f"{root}/cpu,cpuacct", root):
        q, p = read(f"{base}/cpu.cfs_quota_us"), read(f"{base}/cpu.cfs_period_us")
        if q and p:
            try:
                quota, period = int(q[0]), int(p[0])
            except ValueError:
                return None
            return quota / period if quota > 0 and period > 0 else None
    return None


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _env_threads(name: str) -> int | None:
    """A thread count from the environment variable `name`, or None when it is unset or blank.
    OpenMP allows a nested list ("4,2"): its first entry is the count of the outer level."""
    import os

    env = os.environ.get(name, "").strip()
    if not env:
        return None
    first = env.split(",")[0].strip()
    if not first.isdigit() or int(first) < 1:
        raise ValueError(f"{name}={env!r} must be an int >= 1 (CPU threads); unset it for the default")
    return int(first)


def torch_threads() -> int:
    """The intra-op thread count dlink gives torch: $DLINK_THREADS if set, else $OMP_NUM_THREADS if
    set (the user's explicit choice, also what numpy's BLAS reads), else the usable CPUs less one (on
    a machine with 2 or more). torch's OpenMP threads wait for each other at every op; when one of
    their cores is taken by another process the whole op waits on it (a Diffusion-Link epoch ran
    25x slower on 2 threads next to one busy process), while one core left free costs little:
    measured in benchmarks/bench_threads_cpu.txt."""
    for name in ("DLINK_THREADS", "OMP_NUM_THREADS"):
        n = _env_threads(name)
        if n is not None:
            return n
    n = usable_cpus()
    return n - 1 if n >= 2 else 1


def thread_env() -> dict[str, str]:
    """Variables that give numpy's BLAS (OpenBLAS, MKL) and torch one thread count in a process
    started with them: {OMP, MKL, OPENBLAS}_NUM_THREADS = `torch_threads()`. Empty when
    OMP_NUM_THREADS is already set: the user's count stands, and both libraries fall back to it."""
    if _env_threads("OMP_NUM_THREADS") is not None:
        return {}
    n = str(torch_threads())
    return {name: n for name in THREAD_VARS}


def set_torch_threads(n: int | None = None) -> int:
    """torch.set_num_threads(n or `torch_threads()`); returns the count set. Called by
    `resolve_params`, where every notebook starts."""
    import torch

    n = torch_threads() if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads={n!r} must be an int >= 1")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
