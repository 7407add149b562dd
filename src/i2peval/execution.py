"""How the workflow's jobs run, not what they compute (the configuration's ``execution``
section): changing these settings reruns nothing, so jobs read them from the configuration
rather than from their params."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from i2peval.generation.latent_models import SpeedOptions


@dataclass(frozen=True)
class ExecutionSettings:
    device: str  # auto, cpu or cuda
    generate_batch_size: int | str  # or auto (`generation.generate.resolved_batch_size`)
    classify_batch_size: int
    gpu_lock_dir: str
    generate_threads: int
    classify_threads: int
    generate_mem_mb: int
    classify_mem_mb: int
    check_disk_space: bool
    fuse_qkv: bool
    channels_last: bool
    compile_denoiser: bool

    @property
    def speed(self) -> SpeedOptions:
        return SpeedOptions(self.fuse_qkv, self.channels_last, self.compile_denoiser)
