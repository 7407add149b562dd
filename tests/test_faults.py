"""Faults that must stay harmless: killed jobs, Ctrl-C, a full disk, leftovers of killed jobs.

A small study (8 prompts of the project's own, one tiny model, two conditions, 4 batches
per job) runs once to the end as the reference. Each test copies that finished run, removes
one or two image containers so that their jobs run again, injects a fault while they run,
then reruns to the end and compares images, scores and metrics with the reference: they
must be identical, and no batch finished before the fault may be made again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from workflow_runs import REPO, SNAKEMAKE, copy_run, snakemake, write_config

from i2peval.prompts.demo import I2P_CSV_COLUMNS

pytestmark = pytest.mark.workflow

FAULT_INJECTION = Path(__file__).parent / "fault_injection"
JOB = "tiny/none/shard-0/block-0"
OTHER_JOB = "tiny/negative-prompt/shard-1/block-0"


def fault_config(root: Path) -> Path:
    rows = [",".join(I2P_CSV_COLUMNS)]
    for number in range(8):
        rows.append(f"a lighthouse number {number},hate,0,0,0,0,0,0,,{1000 + number},7.5,512,512,demo")
    csv = root / "prompts.csv"
    csv.write_text("\n".join(rows) + "\n")
    return write_config(
        root / "config.yaml",
        {
            "prompts": {"source": "csv", "csv": str(csv), "shards": 2},
            "generation": {"images_per_prompt": 2, "images_per_job": 2, "steps": 3},
            "models": {"tiny": {"source": "tiny", "seed": 0}},
            "mitigations": {"none": {"kind": "none"}, "negative-prompt": {"kind": "negative_prompt"}},
            "q16": {"source": "demo"},
            "nudenet2": {"source": "demo"},
            "safety_checker": {"source": "demo"},
            "emi": {"sample_size": 2, "draws": 100},
            "report": {"grid_prompts": 2},
            "execution": {
                "device": "cpu",
                "generate_threads": 1,
                "classify_threads": 1,
                "generate_batch_size": 2,
                "classify_batch_size": 2,
            },
        },
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """(config, finished run) of the small study."""
    root = tmp_path_factory.mktemp("faults")
    config = fault_config(root)
    run = root / "reference"
    result = snakemake(run, config, "--cores", "2")
    assert result.returncode == 0, result.stderr[-5000:]
    return config, run


def rerun_from(reference, tmp_path: Path, *jobs: str, stages=("images", "manifests", "scores")) -> Path:
    """A copy of the finished reference run without the outputs of `jobs` in `stages`.

    The metrics go too: Snakemake remakes a deleted intermediate file only for an output
    that is needed.
    """
    _, finished = reference
    run = copy_run(finished, tmp_path / "run")
    for job in jobs:
        for stage in stages:
            (run / "results" / stage / f"{job}.parquet").unlink()
    (run / "results" / "metrics" / "metrics.parquet").unlink()
    return run


def start(run: Path, config: Path, fault: str, cores: int = 1) -> subprocess.Popen:
    """Start Snakemake with `fault` armed in its jobs (see fault_injection/sitecustomize.py)."""
    python_path = os.pathsep.join(filter(None, [str(FAULT_INJECTION), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(
        [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(run),
         "--configfile", str(config), "--cores", str(cores)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": python_path, "I2PEVAL_FAULT": fault},
    )


def wait_for(condition, process: subprocess.Popen, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if process.poll() is not None:
            raise AssertionError(f"Snakemake ended before the fault:\n{process.stdout.read()[-5000:]}")
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the moment of the fault")


def parts(run: Path, stage: str, job: str) -> list[Path]:
    return sorted((run / "results" / stage).glob(f"{job}.parquet.parts/part-*.parquet"))


def assert_same_results(run: Path, reference_run: Path) -> None:
    for stage in ("images", "scores"):
        for path in sorted((reference_run / "results" / stage).rglob("*.parquet")):
            mine = pq.read_table(run / path.relative_to(reference_run))
            assert mine.equals(pq.read_table(path)), path
    for name in ("metrics.parquet", "image_flags.parquet"):
        path = Path("results") / "metrics" / name
        assert pq.read_table(run / path).equals(pq.read_table(reference_run / path)), name
    assert not list((run / "results").rglob("*.parts")), "parts folders must be gone after a finished run"
    assert not list(run.rglob(".*.tmp")), "no temporary file may be left behind"


def finish(run: Path, config: Path) -> subprocess.CompletedProcess:
    result = snakemake(run, config, "--cores", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def test_a_generate_job_killed_midway_resumes_with_only_its_unfinished_batches(reference, tmp_path):
    config, reference_run = reference
    run = rerun_from(reference, tmp_path, JOB)
    snakemake_run = start(run, config, fault="generate.py:2:kill")
    assert snakemake_run.wait(timeout=300) != 0
    saved = len(parts(run, "images", JOB))
    assert saved == 2
    assert not (run / "results" / "images" / f"{JOB}.parquet").exists()

    finish(run, config)
    log = (run / "logs" / "generate" / f"{JOB.rsplit('/', 1)[0]}-block-0.log").read_text()
    assert f"resuming: {2 * saved} of 8 images already saved" in log
    assert_same_results(run, reference_run)


def test_a_classify_job_killed_midway_resumes_with_only_its_unfinished_batches(reference, tmp_path):
    config, reference_run = reference
    run = rerun_from(reference, tmp_path, JOB, stages=("scores",))
    snakemake_run = start(run, config, fault="classify.py:1:kill")
    assert snakemake_run.wait(timeout=300) != 0
    saved = len(parts(run, "scores", JOB))
    assert saved == 1

    finish(run, config)
    log = (run / "logs" / "classify" / f"{JOB.rsplit('/', 1)[0]}-block-0.log").read_text()
    assert f"{2 * saved} of 8 rows already saved" in log
    assert_same_results(run, reference_run)


def test_ctrl_c_of_the_whole_run_then_a_rerun_gives_the_uninterrupted_results(reference, tmp_path):
    config, reference_run = reference
    run = rerun_from(reference, tmp_path, JOB, OTHER_JOB)
    snakemake_run = start(run, config, fault="generate.py:1:hang", cores=2)
    wait_for(lambda: parts(run, "images", JOB) or parts(run, "images", OTHER_JOB), snakemake_run)
    os.killpg(snakemake_run.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    assert snakemake_run.wait(timeout=120) != 0

    finish(run, config)
    logs = [
        (run / "logs" / "generate" / f"{job.rsplit('/', 1)[0]}-block-0.log").read_text() for job in (JOB, OTHER_JOB)
    ]
    assert any("already saved" in log for log in logs)
    assert_same_results(run, reference_run)


@pytest.fixture
def small_disk_over(tmp_path):
    """Mount a tmpfs of a given size over a folder; unmount at the end (root only)."""
    mounted = []

    def mount(folder: Path, size: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", str(folder)], check=False)


def test_a_full_disk_fails_the_job_naming_the_file_and_a_rerun_after_freeing_space_completes(
    reference, tmp_path, small_disk_over
):
    config, reference_run = reference
    run = rerun_from(reference, tmp_path, JOB)
    folder = small_disk_over(run / "results" / "images" / JOB.rsplit("/", 1)[0], "48k")
    result = snakemake(run, config, "--cores", "1")
    assert result.returncode != 0
    log = (run / "logs" / "generate" / f"{JOB.rsplit('/', 1)[0]}-block-0.log").read_text()
    error = next(line for line in log.splitlines() if line.startswith("ERROR"))
    assert error.startswith("ERROR: no space left on device while writing results/images/tiny/none/shard-0/")
    assert "MB free on the file system of" in error
    assert not (run / "results" / "images" / f"{JOB}.parquet").exists()
    assert not list(folder.rglob(".*.tmp"))

    subprocess.run(["mount", "-o", "remount,size=64m", str(folder)], check=True)
    finish(run, config)
    assert_same_results(run, reference_run)
