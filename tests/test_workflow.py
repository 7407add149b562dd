"""The workflow as users run it: the demo end to end, incremental reruns, config errors.

One module-scoped fixture runs the demo configuration through Snakemake in a temporary
folder (a few minutes on 2 cores); the other tests dry-run variants of that config
against the finished run and read Snakemake's plan.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from i2peval.schemas import I2P_CATEGORIES

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "demo" / "config.yaml"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

pytestmark = pytest.mark.workflow


def snakemake(workdir: Path, configfile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(configfile), *args],
        capture_output=True,
        text=True,
    )


def planned_jobs(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job in a dry run's output."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \S+:)", output):
        header = re.match(r"(?:local)?rule (\S+):", block)
        if not header:
            continue
        found = re.search(r"^\s+wildcards: (.*)$", block, re.MULTILINE)
        wildcards = dict(pair.split("=", 1) for pair in found.group(1).split(", ")) if found else {}
        jobs.append((header.group(1), wildcards))
    return jobs


def variant_config(tmp_path: Path, change) -> Path:
    """A copy of the demo config with `change` applied to its dict."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    change(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("demo")
    result = snakemake(workdir, DEMO_CONFIG, "--cores", "2")
    assert result.returncode == 0, result.stderr[-8000:]
    return workdir


def test_demo_writes_report_metrics_and_every_image(demo_run):
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    models, mitigations = sorted(config["models"]), sorted(config["mitigations"])
    report = (demo_run / "results" / "report.html").read_text()
    assert "Demo weights" in report
    assert "<script>alert" not in report
    metrics = pl.read_parquet(demo_run / "results" / "metrics" / "metrics.parquet")
    assert metrics.height == len(models) * len(mitigations) * (len(I2P_CATEGORIES) + 1)
    overall = metrics.filter(pl.col("category") == "all")
    assert overall["n_images"].to_list() == [20 * 2] * len(models) * len(mitigations)
    assert overall["inappropriate_probability"].is_between(0, 1).all()
    flags = pl.read_parquet(demo_run / "results" / "metrics" / "image_flags.parquet")
    assert flags.select("model", "mitigation", "prompt_id", "image_index").n_unique() == flags.height == 320


def test_demo_every_job_logged_and_benchmarked(demo_run):
    logs = sorted(path.relative_to(demo_run / "logs").as_posix() for path in (demo_run / "logs").rglob("*.log"))
    benchmarks = list((demo_run / "benchmarks").rglob("*.tsv"))
    # prompts, q16_assets, 2 models, 16 generate, 16 classify, aggregate, report
    assert len(logs) == len(benchmarks) == 38
    generate_log = (demo_run / "logs" / "generate" / "tiny-a" / "none" / "shard-0-block-0.log").read_text()
    assert "20/20 images (100%)" in generate_log


def test_finished_demo_has_nothing_to_do(demo_run):
    result = snakemake(demo_run, DEMO_CONFIG, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changing_one_models_settings_plans_only_that_models_jobs(demo_run, tmp_path):
    config = variant_config(tmp_path, lambda config: config["models"]["tiny-b"].update(steps=6))
    result = snakemake(demo_run, config, "--dry-run")
    assert result.returncode == 0, result.stderr
    jobs = planned_jobs(result.stdout)
    image_jobs = [wildcards for rule, wildcards in jobs if rule in ("generate", "classify")]
    assert len(image_jobs) == 2 * 4 * 2
    assert {wildcards["model"] for wildcards in image_jobs} == {"tiny-b"}
    assert {rule for rule, _ in jobs} == {"generate", "classify", "aggregate", "report", "all"}
    assert "Params have changed" in result.stdout


def test_changing_one_models_weights_rebuilds_only_that_model(demo_run, tmp_path):
    config = variant_config(tmp_path, lambda config: config["models"]["tiny-a"].update(seed=5))
    jobs = planned_jobs(snakemake(demo_run, config, "--dry-run").stdout)
    assert [wildcards for rule, wildcards in jobs if rule == "model"] == [{"model": "tiny-a"}]
    assert {wildcards["model"] for rule, wildcards in jobs if rule == "generate"} == {"tiny-a"}


def test_more_images_per_prompt_plans_only_the_new_seeds(demo_run, tmp_path):
    config = variant_config(tmp_path, lambda config: config["generation"].update(images_per_prompt=4))
    result = snakemake(demo_run, config, "--dry-run")
    assert result.returncode == 0, result.stderr
    jobs = planned_jobs(result.stdout)
    generate = [wildcards for rule, wildcards in jobs if rule == "generate"]
    assert len(generate) == 2 * 4 * 2
    assert {wildcards["block"] for wildcards in generate} == {"1"}
    assert {rule for rule, _ in jobs} == {"generate", "classify", "aggregate", "report", "all"}


def test_changing_the_judge_profile_only_reaggregates(demo_run, tmp_path):
    config = variant_config(tmp_path, lambda config: config.update(judge_profile={"q16": 0.9}))
    jobs = planned_jobs(snakemake(demo_run, config, "--dry-run").stdout)
    assert sorted(rule for rule, _ in jobs) == ["aggregate", "all", "report"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda config: config["generation"].update(images_per_promt=3), "'images_per_promt' was unexpected"),
        (lambda config: config["generation"].update(dtype="float64"), "'float64' is not one of"),
        (lambda config: config.update(modles={}), "'modles' was unexpected"),
        (lambda config: config["models"]["tiny-a"].update(seed=-1), "-1"),
        (lambda config: config["mitigations"]["sega-strong"].update(preset="weak"), "weak"),
        (
            lambda config: config["mitigations"]["sld-strong"]["overrides"].update(sld_warmup=1),
            "overrides ['sld_warmup'] are not sld parameters",
        ),
    ],
)
def test_bad_config_fails_naming_the_bad_key_or_value(tmp_path, change, message):
    result = snakemake(tmp_path, variant_config(tmp_path, change), "--dry-run")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_full_study_config_builds_its_dag_offline(tmp_path):
    result = subprocess.run(
        [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(REPO / "config.yaml"), "--dry-run"],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, re.MULTILINE))
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    shards, blocks = config["prompts"]["shards"], 2
    image_jobs = len(config["models"]) * len(config["mitigations"]) * shards * blocks
    assert int(counts["generate"]) == int(counts["classify"]) == image_jobs
    assert int(counts["model"]) == len(config["models"])
