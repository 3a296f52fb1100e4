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
