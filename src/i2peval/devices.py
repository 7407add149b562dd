"""Which device a job computes on, and which GPU it was given.

Under SLURM each job gets its own ``CUDA_VISIBLE_DEVICES``. Run locally, Snakemake
assigns no device ids (every ``gpu=1`` job sees every GPU), so a job claims a free GPU
itself by holding an exclusive lock on ``<lock_dir>/gpu-<i>.lock`` until it exits; the
kernel drops the lock when the process ends, however it ends, so a killed job's GPU is
free again at once. The assignment a job ran under is logged and recorded in its
manifest, also when the job computes on the CPU.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from i2peval.errors import I2PEvalError

log = logging.getLogger(__name__)


class DeviceError(I2PEvalError, RuntimeError):
    """The configured device cannot be used on this machine."""


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype called `name` in the configuration."""
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is not one of {sorted(DTYPES)}")
    return DTYPES[name]


class Gpus(Protocol):
    """The GPUs a job can claim: how many there are, and the torch device of each."""

    def count(self) -> int: ...

    def device(self, index: int) -> torch.device: ...


class CudaGpus:
    """The CUDA devices torch sees."""

    def count(self) -> int:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    def device(self, index: int) -> torch.device:
        return torch.device("cuda", index)


# The machine's GPUs. Tests replace it to run the claiming logic on a CPU-only machine.
GPUS: Gpus = CudaGpus()


@dataclass(frozen=True)
class JobDevice:
    """Where a job computes, and the GPU assignment it ran under.

    ``gpu`` is ``CUDA_VISIBLE_DEVICES=<value>`` when a scheduler chose, ``claimed=<i>``
    when the job claimed GPU ``i`` by lock file, ``none`` when it had no GPU.
    """

    torch: torch.device
    gpu: str


@contextmanager
def claim_gpu(
    device_count: int,
    lock_dir: Path,
    environ: Mapping[str, str] | None = None,
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
            with open(lock_dir / f"gpu-{index}.lock", "w") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                try:
                    yield index
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
                return
        time.sleep(poll_seconds)


@contextmanager
def compute_device(
    requested: str,
    lock_dir: Path,
    gpus: Gpus | None = None,
    environ: Mapping[str, str] | None = None,
) -> Iterator[JobDevice]:
    """The device for a job: ``cpu``, ``cuda`` (a claimed GPU) or ``auto`` (cuda if present)."""
    if requested not in ("auto", "cpu", "cuda"):
        raise DeviceError(f"execution.device is {requested!r}, not one of auto, cpu, cuda")
    gpus = GPUS if gpus is None else gpus
    environ = os.environ if environ is None else environ
    scheduled = environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    available = gpus.count()
    if requested == "cpu" or (requested == "auto" and available == 0):
        job_device = JobDevice(torch.device("cpu"), f"CUDA_VISIBLE_DEVICES={scheduled}" if scheduled else "none")
        log.info("device: cpu (GPU assignment: %s)", job_device.gpu)
        yield job_device
        return
    if available == 0:
        raise DeviceError("execution.device is 'cuda', but torch sees no CUDA device on this machine")
    with claim_gpu(available, lock_dir, environ) as index:
        if scheduled:
            job_device = JobDevice(gpus.device(index), f"CUDA_VISIBLE_DEVICES={scheduled}")
            log.info("device: %s (GPU assignment: %s, set by the scheduler)", job_device.torch, job_device.gpu)
        else:
            job_device = JobDevice(gpus.device(index), f"claimed={index}")
            log.info(
                "device: %s (GPU assignment: %s, holding %s)",
                job_device.torch, job_device.gpu, lock_dir / f"gpu-{index}.lock",
            )
        yield job_device
