"""The demo study through profiles/slurm on a real single-node SLURM cluster.

The cluster (tests/slurm_cluster.py) has two pretend GPUs, so SLURM gives every GPU job
its own CUDA_VISIBLE_DEVICES; the demo computes on the CPU and records the assignment
in each manifest. The run takes the demo's SD 1.x model under its two mitigations of two
branches (the cheapest): two generate jobs at once on two GPUs, then two classify jobs,
show what SLURM does as the whole demo's twelve would (tests/test_workflow.py runs the
whole demo), in a fraction of the time.
Skipped, saying why, only where SLURM cannot start (not root, not installed, or a real
installation's configuration in /etc/slurm).
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime
from itertools import combinations
from pathlib import Path

import polars as pl
import pytest
import yaml
from slurm_cluster import SingleNodeSlurm, unavailable_reason

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
PARTITION = "gpu-test"
STUDY = yaml.safe_load((REPO / "demo" / "config.yaml").read_text())
STUDY["models"] = {"tiny-a": STUDY["models"]["tiny-a"]}
STUDY["mitigations"] = {name: STUDY["mitigations"][name] for name in ("none", "negative-prompt")}
CONDITIONS = len(STUDY["models"]) * len(STUDY["mitigations"])
STUDY["prompt_sets"] = {"i2p": STUDY["prompt_sets"]["i2p"]}
IMAGE_JOBS = CONDITIONS * STUDY["prompt_sets"]["i2p"]["shards"]

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"SLURM cannot start here: {reason}")
    cluster = SingleNodeSlurm(tmp_path_factory.mktemp("slurm"), partition=PARTITION)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def filled_in_profile(folder: Path) -> Path:
    """profiles/slurm with its EDIT lines set for the test cluster, as a user would."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "profile.v9+.yaml").read_text())
    profile["default-resources"]["slurm_partition"] = PARTITION
    del profile["default-resources"]["slurm_account"]
    profile["slurm-no-account"] = True
    # the plugin's first status check comes 40 s after a submission; the demo's jobs are short
    profile["slurm-init-seconds-before-status-checks"] = 2
    folder.mkdir()
    (folder / "profile.v9+.yaml").write_text(yaml.safe_dump(profile))
    return folder


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """The demo run through the SLURM profile: (working directory, Snakemake's output)."""
    root = tmp_path_factory.mktemp("slurm-demo")
    workdir = root / "work"
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(STUDY, sort_keys=False))
    result = subprocess.run(
        [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(config), "--profile", str(filled_in_profile(root / "profile"))],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-8000:]
    return workdir, result.stdout + result.stderr


def test_demo_through_slurm_writes_every_output(slurm_run):
    workdir, _ = slurm_run
    assert "Demo weights" in (workdir / "results" / "report.html").read_text()
    metrics = pl.read_parquet(workdir / "results" / "metrics" / "metrics.parquet")
    overall = metrics.filter(pl.col("category") == "all", pl.col("profile") == "paper", pl.col("judge") == "any")
    assert overall.height == CONDITIONS
    assert overall["n_images"].to_list() == [20 * 2] * overall.height
    assert len(list((workdir / "results" / "manifests").rglob("*.parquet"))) == IMAGE_JOBS
    assert len(list((workdir / "results" / "scores").rglob("*.parquet"))) == IMAGE_JOBS


def test_gpu_jobs_went_to_slurm_and_light_jobs_ran_locally(slurm_run):
    _, output = slurm_run
    submitted = re.findall(r"submitted with SLURM jobid \d+ \(log: \S+/rule_(\w+)/", output)
    assert sorted(set(submitted)) == ["classify", "generate"]
    assert len(submitted) == 2 * IMAGE_JOBS


def generate_jobs(workdir: Path) -> list[dict]:
    """Each generate job's time span (from its log) and GPU assignments (from its manifest)."""
    jobs = []
    for manifest in sorted((workdir / "results" / "manifests").rglob("*.parquet")):
        model, mitigation, shard, block = manifest.relative_to(workdir / "results" / "manifests").parts
        log = workdir / "logs" / "generate" / model / mitigation / f"{shard}-{block.removesuffix('.parquet')}.log"
        stamps = [
            datetime.strptime(found, "%Y-%m-%d %H:%M:%S,%f")
            for found in re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", log.read_text(), re.MULTILINE)
        ]
        jobs.append(
            {
                "log": log,
                "start": min(stamps),
                "end": max(stamps),
                "gpus": set(pl.read_parquet(manifest)["gpu_assignment"].to_list()),
            }
        )
    return jobs


def test_concurrent_gpu_jobs_saw_different_cuda_visible_devices(slurm_run):
    workdir, _ = slurm_run
    jobs = generate_jobs(workdir)
    assert len(jobs) == IMAGE_JOBS
    assert all(len(job["gpus"]) == 1 for job in jobs)
    assert {gpu for job in jobs for gpu in job["gpus"]} == {"CUDA_VISIBLE_DEVICES=0", "CUDA_VISIBLE_DEVICES=1"}
    overlapping = [
        (first, second) for first, second in combinations(jobs, 2)
        if first["start"] < second["end"] and second["start"] < first["end"]
    ]
    assert overlapping, "no two generate jobs ran at the same time"
    for first, second in overlapping:
        assert first["gpus"] != second["gpus"], (first["log"], second["log"])
        assert "GPU assignment: CUDA_VISIBLE_DEVICES=" in first["log"].read_text()
