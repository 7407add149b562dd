"""Which device a job computes on.

Under SLURM each job gets its own ``CUDA_VISIBLE_DEVICES``. Run locally, Snakemake
assigns no device ids (every ``gpu=1`` job sees every GPU), so a job claims a free GPU
itself by holding an exclusive lock on ``<lock_dir>/gpu-<i>.lock`` until it exits.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from i2peval.errors import I2PEvalError


class DeviceError(I2PEvalError, RuntimeError):
    """The configured device cannot be used on this machine."""


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype called `name` in the configuration."""
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is not one of {sorted(DTYPES)}")
    return DTYPES[name]


@contextmanager
def claim_gpu(
    device_count: int,
    lock_dir: Path,
    environ: dict[str, str] | None = None,
    poll_seconds: float = 5.0,
) -> Iterator[int]:
    """Yield the index of a GPU this process may use alone, waiting until one is free.

    With ``CUDA_VISIBLE_DEVICES`` set (SLURM, or by hand) the scheduler already chose:
    index 0 of the visible devices is yielded and nothing is locked.
    """
    environ = os.environ if environ is None else environ
    if environ.get("CUDA_VISIBLE_DEVICES", "").strip():
        yield 0
        return
    if device_count < 1:
        raise DeviceError("no CUDA device to claim")
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:
        for index in range(device_count):
            handle = open(lock_dir / f"gpu-{index}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield index
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        time.sleep(poll_seconds)


@contextmanager
def compute_device(requested: str, lock_dir: Path) -> Iterator[torch.device]:
    """The device for a job: ``cpu``, ``cuda`` (a claimed GPU) or ``auto`` (cuda if present)."""
    if requested not in ("auto", "cpu", "cuda"):
        raise DeviceError(f"execution.device is {requested!r}, not one of auto, cpu, cuda")
    use_cuda = requested == "cuda" or (requested == "auto" and torch.cuda.is_available())
    if not use_cuda:
        yield torch.device("cpu")
        return
    if not torch.cuda.is_available():
        raise DeviceError("execution.device is 'cuda', but torch sees no CUDA device on this machine")
    with claim_gpu(torch.cuda.device_count(), lock_dir) as index:
        yield torch.device("cuda", index)
