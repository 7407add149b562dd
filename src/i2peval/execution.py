"""How the workflow's jobs run, not what they compute (the configuration's ``execution``
section): changing these settings reruns nothing, so jobs read them from the configuration
rather than from their params."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpeedOptions:
    """Faster ways to run the same computation (the configuration's ``execution``: they
    rerun nothing), each off unless asked for: what each gains is measured per GPU by
    tests/benchmarks/generate.py, and results may differ from the plain way by float
    rounding (the benchmark's pixel difference). ``fuse_qkv``: one projection for query,
    key and value (diffusers' ``fuse_qkv_projections``); ``channels_last``: NHWC weights
    for the convolutions; ``compile_denoiser``: ``torch.compile`` of the denoiser (the
    first batch pays the compilation)."""

    fuse_qkv: bool = False
    channels_last: bool = False
    compile_denoiser: bool = False


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
