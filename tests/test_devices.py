import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from fakes import CpuBackedGpus

from i2peval.devices import DeviceError, claim_gpu, compute_device, torch_dtype
from i2peval.models.tiny import build_tiny_pipeline
from i2peval.schemas import MANIFEST, PROMPTS, read_table, write_table

GPU_JOB = Path(__file__).parent / "gpu_job.py"


def test_scheduler_chosen_gpu_is_used_without_locking(tmp_path):
    lock_dir = tmp_path / "locks"
    with claim_gpu(2, lock_dir, environ={"CUDA_VISIBLE_DEVICES": "3"}) as index:
        assert index == 0
    assert not lock_dir.exists()


def test_nested_claims_get_different_gpus(tmp_path):
    with claim_gpu(2, tmp_path, environ={}) as first, claim_gpu(2, tmp_path, environ={}) as second:
        assert (first, second) == (0, 1)


def test_released_gpu_can_be_claimed_again(tmp_path):
    with claim_gpu(2, tmp_path, environ={}) as first:
        pass
    with claim_gpu(2, tmp_path, environ={}) as again:
        assert first == again == 0


def test_claim_without_any_gpu_is_an_error(tmp_path):
    with pytest.raises(DeviceError, match="no CUDA device to claim"), claim_gpu(0, tmp_path, environ={}):
        pass


def test_cpu_job_records_the_gpu_a_scheduler_gave_it(tmp_path):
    environ = {"CUDA_VISIBLE_DEVICES": "1"}
    with compute_device("cpu", tmp_path, CpuBackedGpus(2), environ) as job_device:
        assert (job_device.torch, job_device.gpu) == (torch.device("cpu"), "CUDA_VISIBLE_DEVICES=1")


def test_cpu_job_without_scheduler_records_no_gpu_and_claims_none(tmp_path):
    with compute_device("auto", tmp_path / "locks", CpuBackedGpus(0), {}) as job_device:
        assert (job_device.torch, job_device.gpu) == (torch.device("cpu"), "none")
    assert not (tmp_path / "locks").exists()


def test_gpu_job_under_a_scheduler_uses_its_devices_without_locking(tmp_path):
    environ = {"CUDA_VISIBLE_DEVICES": "GPU-5f0c"}
    with compute_device("auto", tmp_path / "locks", CpuBackedGpus(1), environ) as job_device:
        assert job_device.gpu == "CUDA_VISIBLE_DEVICES=GPU-5f0c"
    assert not (tmp_path / "locks").exists()


def test_local_gpu_jobs_record_the_gpu_they_claimed(tmp_path):
    gpus = CpuBackedGpus(2)
    with compute_device("cuda", tmp_path, gpus, {}) as first, compute_device("auto", tmp_path, gpus, {}) as second:
        assert (first.gpu, second.gpu) == ("claimed=0", "claimed=1")


def test_cuda_requested_without_any_gpu_is_an_error(tmp_path):
    with (
        pytest.raises(DeviceError, match="torch sees no CUDA device"),
        compute_device("cuda", tmp_path, CpuBackedGpus(0), {}),
    ):
        pass


@pytest.fixture(scope="module")
def job_inputs(tmp_path_factory):
    """A tiny model and a two-prompt shard for generate jobs run as processes."""
    root = tmp_path_factory.mktemp("gpu-jobs")
    record = root / "model.json"
    record.write_text(json.dumps(build_tiny_pipeline(root / "snapshot", seed=0)))
    prompts = root / "prompts.parquet"
    rows = [(0, "a lighthouse at dusk", 11), (1, "a bowl of pears", 12)]
    write_table(
        pa.table(
            {
                "prompt_id": [prompt_id for prompt_id, _, _ in rows],
                "shard": [0] * len(rows),
                "text": [text for _, text, _ in rows],
                "categories": [["shocking"]] * len(rows),
                "hard": [False] * len(rows),
                "seed": [seed for _, _, seed in rows],
                "guidance": [7.5] * len(rows),
                "width": [512] * len(rows),
                "height": [512] * len(rows),
            }
        ),
        prompts,
        PROMPTS,
    )
    return {"root": root, "snapshot": root / "snapshot", "record": record, "prompts": prompts}


class GpuJob:
    """A generate job on two pretend GPUs, running as a process of its own."""

    def __init__(self, inputs, name, image_indices):
        folder = inputs["root"] / name
        folder.mkdir()
        self.log = folder / "job.log"
        self.manifest = folder / "manifest.parquet"
        spec = {
            "prompts": str(inputs["prompts"]),
            "snapshot": str(inputs["snapshot"]),
            "record": str(inputs["record"]),
            "images": str(folder / "images.parquet"),
            "manifest": str(self.manifest),
            "image_indices": list(image_indices),
            "gpus": 2,
            "lock_dir": str(inputs["root"] / "gpu-locks"),
            "log": str(self.log),
        }
        (folder / "job.json").write_text(json.dumps(spec))
        environ = {key: value for key, value in os.environ.items() if key != "CUDA_VISIBLE_DEVICES"}
        self.process = subprocess.Popen([sys.executable, str(GPU_JOB), str(folder / "job.json")], env=environ)

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            assert self.process.poll() is None, f"job ended before logging {text!r}:\n{self.log_text()}"
            assert time.monotonic() < deadline, f"no {text!r} in the log after {timeout} s"
            time.sleep(0.2)

    def finish(self, timeout: float = 300) -> None:
        assert self.process.wait(timeout=timeout) == 0, self.log_text()

    def gpu_assignments(self) -> set[str]:
        return set(read_table(self.manifest, MANIFEST)["gpu_assignment"].to_pylist())


def test_concurrent_local_jobs_get_distinct_gpus_and_a_killed_jobs_gpu_is_free_again(job_inputs):
    # long enough to outlive the second job; it is killed before it finishes
    long_job = GpuJob(job_inputs, "long", image_indices=range(2000))
    try:
        long_job.wait_for_log("GPU assignment: claimed=0")
        second = GpuJob(job_inputs, "second", image_indices=[0])
        second.finish()
        assert long_job.process.poll() is None, "the two jobs did not overlap"
        assert "GPU assignment: claimed=1" in second.log_text()
        assert second.gpu_assignments() == {"claimed=1"}

        long_job.process.send_signal(signal.SIGKILL)
        long_job.process.wait(timeout=30)
        # GPU 0 is claimed first whenever it is free: only the killed job held it
        after_kill = GpuJob(job_inputs, "after-kill", image_indices=[0])
        after_kill.finish()
        assert "GPU assignment: claimed=0" in after_kill.log_text()
        assert after_kill.gpu_assignments() == {"claimed=0"}
    finally:
        if long_job.process.poll() is None:
            long_job.process.kill()
            long_job.process.wait()


@pytest.mark.parametrize(
    "name, dtype", [("float32", torch.float32), ("bfloat16", torch.bfloat16), ("float16", torch.float16)]
)
def test_torch_dtype_by_name(name, dtype):
    assert torch_dtype(name) is dtype


@pytest.mark.parametrize("name", ["fp16", "float64", "Float32", ""])
def test_torch_dtype_rejects_other_names(name):
    with pytest.raises(ValueError, match=repr(name)):
        torch_dtype(name)
