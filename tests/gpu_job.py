"""A generate job on pretend GPUs, run as a process of its own by tests/test_devices.py.

Usage: ``python tests/gpu_job.py JOB.json``. The JSON holds `run_generate_job`'s paths
and image indices, ``gpus`` (how many GPUs to pretend there are) and ``log`` (the job's
log file). The job claims a GPU exactly as a workflow job does; only the devices are
pretend (CPU-backed), so claiming can be tested on a machine without GPUs.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fakes import CpuBackedGpus

import i2peval.devices
from i2peval.logs import to_log_file

job = json.loads(Path(sys.argv[1]).read_text())
to_log_file(job["log"])
i2peval.devices.GPUS = CpuBackedGpus(job["gpus"])

from i2peval.generation.generate import GenerationSettings, run_generate_job  # noqa: E402 - after log/GPU setup
from i2peval.generation.mitigations import HARNESS_CONCEPT, resolve_mitigation  # noqa: E402 - after log/GPU setup

run_generate_job(
    prompt_set="i2p",
    prompts_path=Path(job["prompts"]),
    snapshot_dir=Path(job["snapshot"]),
    model_record_path=Path(job["record"]),
    model_name="tiny",
    mitigation=resolve_mitigation("none", {"kind": "none"}, HARNESS_CONCEPT),
    settings=GenerationSettings(steps=2, guidance_scale=7.5, resolution=64, dtype="float32"),
    image_indices=job["image_indices"],
    images_path=Path(job["images"]),
    manifest_path=Path(job["manifest"]),
    device="cuda",
    batch_size=4,
    lock_dir=Path(job["lock_dir"]),
)
