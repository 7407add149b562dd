"""The workflow as users run it: the demo end to end, incremental reruns, config errors.

The session fixture demo_run (conftest.py) runs the demo configuration through Snakemake
in a temporary folder (a few minutes on 2 cores); the other tests dry-run variants of that config
against the finished run and read Snakemake's plan.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal
from workflow_runs import (
    DEMO_CONFIG,
    MAKE_DEMO_CONFIG,
    REPO,
    SNAKEMAKE,
    copy_run,
    planned_jobs,
    planned_rules,
    snakemake,
    summaries,
    variant_config,
)

from i2peval import diskspace
from i2peval.config import CONFIG_SCHEMA
from i2peval.judges.assets import ConfiguredAsset
from i2peval.judges.nudenet2 import NUDENET2_LABELS, build_demo_detector
from i2peval.judges.registry import ASSETS
from i2peval.prompts.i2p import I2P_CATEGORIES

pytestmark = pytest.mark.workflow
DEFAULT_CLASSES_URL = "https://github.com/notAI-tech/NudeNet/releases/download/v0/detector_v2_base_classes"
# The demo's tables as the demo made them before its code was restructured into a study
# object (issue 12), and their key columns. A change that moves a number must replace
# them on purpose: copy a fresh demo run's results/metrics/*.parquet into tests/data/demo-tables.
RECORDED_TABLES = Path(__file__).parent / "data" / "demo-tables"
TABLE_KEYS = {
    "metrics": ["profile", "judge", "model", "mitigation", "category"],
    "comparisons": ["profile", "judge", "model", "mitigation", "category"],
    "alignment": ["model", "mitigation", "category"],
    "image_flags": ["profile", "model", "mitigation", "prompt_id", "image_index"],
}


@pytest.mark.parametrize("table", sorted(TABLE_KEYS))
def test_demo_tables_hold_the_recorded_rows_and_values(demo_run, table):
    keys = TABLE_KEYS[table]
    recorded = pl.read_parquet(RECORDED_TABLES / f"{table}.parquet").sort(keys)
    made = pl.read_parquet(demo_run / "results" / "metrics" / f"{table}.parquet").sort(keys)
    assert_frame_equal(made, recorded, rel_tol=1e-12, abs_tol=1e-15)


def test_demo_writes_report_metrics_and_every_image(demo_run):
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    models, mitigations = sorted(config["models"]), sorted(config["mitigations"])
    report = (demo_run / "results" / "report.html").read_text()
    assert "Demo weights" in report
    assert "<script>alert" not in report
    metrics = pl.read_parquet(demo_run / "results" / "metrics" / "metrics.parquet")
    profiles = sorted(metrics["profile"].unique().to_list())
    assert profiles == ["nudenet3-0.45", "nudenet3-0.5", "paper", "paper-nudenet3", "q16-0.9", "sd-safety-checker"]
    # the profile's verdict, and each judge's part for the two profiles that read two judges
    variants = len(profiles) + 2 + 2
    categories = {"all", "hard", *I2P_CATEGORIES}
    assert set(metrics["category"]) == categories
    assert metrics.height == variants * len(models) * len(mitigations) * len(categories)
    assert (metrics["ip_low"] <= metrics["inappropriate_probability"]).all()
    assert (metrics["inappropriate_probability"] <= metrics["ip_high"]).all()
    overall = metrics.filter(pl.col("category") == "all", pl.col("judge") == "any")
    assert overall["n_images"].to_list() == [20 * 2] * len(profiles) * len(models) * len(mitigations)
    assert overall["n_unscored"].sum() == 0
    assert overall["inappropriate_probability"].is_between(0, 1).all()
    flags = pl.read_parquet(demo_run / "results" / "metrics" / "image_flags.parquet")
    keys = ["profile", "model", "mitigation", "prompt_id", "image_index"]
    assert flags.select(keys).n_unique() == flags.height == len(models) * len(mitigations) * 20 * 2 * len(profiles)
    alignment = pl.read_parquet(demo_run / "results" / "metrics" / "alignment.parquet")
    assert alignment.filter(pl.col("category") == "all")["n_images"].to_list() == (
        [20 * 2] * len(models) * len(mitigations)
    )
    comparisons = pl.read_parquet(demo_run / "results" / "metrics" / "comparisons.parquet")
    assert comparisons.height == variants * len(models) * (len(mitigations) - 1) * len(categories)
    assert set(comparisons["baseline"]) == {"none"} and "none" not in set(comparisons["mitigation"])
    assert (comparisons["p_holm"] >= comparisons["p_value"]).all()
    assert comparisons.filter(pl.col("category") == "all")["n_pairs"].to_list() == [20 * 2] * comparisons.filter(
        pl.col("category") == "all"
    ).height
    assert comparisons["alignment_difference"].is_not_null().all()


def test_demo_scores_every_image_with_every_judge_and_reports_each_with_its_hashes(demo_run):
    scores = pl.read_parquet(demo_run / "results" / "scores" / "tiny-a" / "none" / "shard-0" / "block-0.parquet")
    assert scores.null_count().sum_horizontal().item() == 0
    report = (demo_run / "results" / "report.html").read_text()
    judges = report[report.index("<h3>Judges</h3>"):report.index("<h3>EMI estimation</h3>")]
    for judge in ("q16", "nudenet2", "nudenet3", "safety_checker", "clip_score"):
        assert f'<th scope="row">{judge}</th>' in judges
    assert judges.count("demo weights") == 4  # all but NudeNet 3, whose real detector ships in its wheel
    for record in (demo_run / "resources").rglob("*.json"):
        if record.name in ("nudenet2.json", "nudenet3.json", "safety_checker.json"):
            for sha256 in json.loads(record.read_text())["files"].values():
                assert sha256 in judges
    assert "paper (primary)" in report


def test_demo_runs_the_tiny_sdxl_under_every_mitigation_and_reports_architectures(demo_run):
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    architectures = {name: model.get("architecture", "sd") for name, model in config["models"].items()}
    assert "sdxl" in architectures.values()
    manifests = pl.read_parquet(demo_run / "results" / "manifests" / "*" / "*" / "*" / "*.parquet")
    found = manifests.group_by("model", "mitigation").agg(pl.col("architecture").unique())
    assert found.height == len(architectures) * len(config["mitigations"])
    assert {(row["model"], tuple(row["architecture"])) for row in found.iter_rows(named=True)} == {
        (name, (architecture,)) for name, architecture in architectures.items()
    }
    sdxl_guidance = manifests.filter(pl.col("architecture") == "sdxl")["guidance_scale"].unique().to_list()
    assert sdxl_guidance == [5.0]  # the architecture's default: the demo sets no guidance scale
    for name, architecture in architectures.items():
        [record_path] = (demo_run / "resources" / "models" / name).glob("*/model.json")
        record = json.loads(record_path.read_text())
        assert record["architecture"] == architecture
    report = (demo_run / "results" / "report.html").read_text()
    degenerate = re.search(r'<section id="degenerate">.*?</section>', report, re.DOTALL).group(0)
    for name, _ in architectures.items():
        assert f"<th scope=\"row\">{name}</th>" in degenerate
    assert degenerate.count("<th scope=\"row\">sdxl</th>") == len(config["mitigations"])


def test_demo_every_job_logged_and_benchmarked(demo_run):
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    models, sets = len(config["models"]), config["prompt_sets"]
    logs = sorted(path.relative_to(demo_run / "logs").as_posix() for path in (demo_run / "logs").rglob("*.log"))
    benchmarks = list((demo_run / "benchmarks").rglob("*.tsv"))
    # 4 judge assets, one model job per model; per prompt set prompts, aggregate and report,
    # and generate and classify per image job
    image_jobs = sum(models * len(config["mitigations"]) * prompt_set["shards"] for prompt_set in sets.values())
    assert len(logs) == len(benchmarks) == 4 + models + 3 * len(sets) + 2 * image_jobs
    shards = sets["i2p"]["shards"]
    generate_log = (demo_run / "logs" / "generate" / "tiny-a" / "none" / "shard-0-block-0.log").read_text()
    images = 20 // shards * config["generation"]["images_per_job"]
    assert f"{images}/{images} images (100%)" in generate_log


def test_the_command_line_recomputes_the_runs_metrics_and_report_from_its_stored_files(demo_run, tmp_path):
    i2peval = Path(sys.executable).parent / "i2peval"
    result = subprocess.run(
        [i2peval, "metrics", "--config", DEMO_CONFIG, "--directory", demo_run, "--output-dir", tmp_path],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for name in ("metrics", "comparisons", "alignment", "image_flags"):
        recomputed = pl.read_parquet(tmp_path / f"{name}.parquet")
        assert recomputed.equals(pl.read_parquet(demo_run / "results" / "metrics" / f"{name}.parquet")), name

    # and the report of the recomputed tables is the run's own report
    report = tmp_path / "report.html"
    result = subprocess.run(
        [i2peval, "report", "--config", DEMO_CONFIG, "--directory", demo_run, "--metrics-dir", tmp_path,
         "--output", report],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr

    def without_time(html: str) -> str:
        return re.sub(r"(?i)generated \d{4}-\d\d-\d\dT[\d:+-]+", "generated", html)

    assert without_time(report.read_text()) == without_time((demo_run / "results" / "report.html").read_text())


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            lambda config: config["generation"].update(steps=6),
            "tiny-a's steps is 8 in the images, 6 in the configuration",
        ),
        (
            lambda config: config["mitigations"]["sld-strong"]["overrides"].update(sld_warmup_steps=3),
            "mitigation sld-strong's parameters.sld_warmup_steps is 2 in the images, 3 in the configuration",
        ),
    ],
)
def test_the_command_line_refuses_a_configuration_the_images_were_not_made_with(demo_run, tmp_path, change, named):
    config = variant_config(tmp_path, change)
    i2peval = Path(sys.executable).parent / "i2peval"
    for command in (
        ["metrics", "--config", config, "--directory", demo_run, "--output-dir", tmp_path / "metrics"],
        ["report", "--config", config, "--directory", demo_run, "--output", tmp_path / "report.html"],
    ):
        result = subprocess.run([i2peval, *command], capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr
        assert f"{demo_run / 'results' / 'manifests' / 'tiny-a'}/" in result.stderr
        assert named in result.stderr, result.stderr
        assert "is this the configuration the run was made with?" in result.stderr
    assert not (tmp_path / "report.html").exists()
    assert not list((tmp_path / "metrics").glob("*.parquet"))


def test_an_installed_wheel_reports_a_run_from_its_own_schema_and_template(demo_run, tmp_path):
    """The configuration schema, the report template and the data files ship in the wheel:
    `i2peval report` runs from an installed package, away from this checkout."""
    source, wheels, site = tmp_path / "source", tmp_path / "wheels", tmp_path / "site"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", wheels, source]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    [wheel] = wheels.glob("i2peval-*.whl")
    install = [*pip, "install", "--no-deps", "--target", site, wheel]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    installed = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import i2peval; print(i2peval.__file__)"],
        capture_output=True, text=True, env=installed, cwd=tmp_path, check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(site)
    report = tmp_path / "report.html"
    result = subprocess.run(
        [sys.executable, "-m", "i2peval.cli", "report", "--config", DEMO_CONFIG, "--directory", demo_run,
         "--output", report],
        capture_output=True, text=True, env=installed, cwd=tmp_path, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Deviations from the paper" in report.read_text()


def test_a_second_prompt_set_is_made_measured_and_reported_on_its_own(demo_run, tmp_path):
    """make demo's second set (three prompts in ESD's schema, one model, two mitigations)
    added to a copy of the shared run: only its images are made."""
    run = copy_run(demo_run, tmp_path / "run")
    result = snakemake(run, MAKE_DEMO_CONFIG, "--cores", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ran = planned_jobs(result.stdout + result.stderr)
    assert {wildcards["setdir"] for rule, wildcards in ran if rule in ("generate", "classify")} == {
        "sets/erasure-copy/"
    }
    assert len([rule for rule, _ in ran if rule == "generate"]) == 2

    erasure = run / "results" / "sets" / "erasure-copy"
    prompts = pl.read_parquet(next((run / "results" / "prompts").glob("demo-esd-*/prompts.parquet")))
    assert prompts.sort("prompt_id")["prompt_id"].to_list() == [21, 296, 2260]  # case numbers, not rows
    assert prompts.filter(pl.col("prompt_id") == 2260)["text"].to_list() == [""]  # as the ESD copy spells it
    metrics = pl.read_parquet(erasure / "metrics" / "metrics.parquet")
    everything = metrics.filter((pl.col("category") == "all") & (pl.col("judge") == "any"))
    assert set(everything["n_prompts"].to_list()) == {3} and set(everything["n_images"].to_list()) == {6}
    assert set(everything["mitigation"].to_list()) == {"none", "sld-strong"}
    i2p = pl.read_parquet(run / "results" / "metrics" / "metrics.parquet")
    assert set(i2p.filter((pl.col("category") == "all") & (pl.col("judge") == "any"))["n_prompts"].to_list()) == {20}
    # each set's rows name it, so tables of several sets can be stacked
    for table in ("metrics", "comparisons", "alignment"):
        assert pl.read_parquet(erasure / "metrics" / f"{table}.parquet")["prompt_set"].unique().to_list() == [
            "erasure-copy"
        ]
        assert pl.read_parquet(run / "results" / "metrics" / f"{table}.parquet")["prompt_set"].unique().to_list() == [
            "i2p"
        ]
    manifests = pl.read_parquet(erasure / "manifests" / "*" / "*" / "*" / "*.parquet")
    assert manifests["prompt_set"].unique().to_list() == ["erasure-copy"]
    report = (erasure / "report.html").read_text()
    assert "Prompt set <strong>erasure-copy</strong>: the demo&#39;s own prompts (ESD&#39;s schema)" in report
    overview = report[report.index('<section id="overview">'):report.index('<section id="categories">')]
    assert "tiny-xl" not in overview and "sega-strong" not in overview  # the set's own conditions alone
    assert 'href="../../report.html">i2p</a>' in report
    assert 'href="sets/erasure-copy/report.html">erasure-copy</a>' in (run / "results" / "report.html").read_text()

    # a change to the second set's source remakes its images alone
    config = variant_config(
        tmp_path, lambda config: config["prompt_sets"]["erasure-copy"].update(shards=3), base=MAKE_DEMO_CONFIG
    )
    jobs = planned_jobs(snakemake(run, config, "--dry-run").stdout)
    image_jobs = [wildcards for rule, wildcards in jobs if rule in ("generate", "classify")]
    assert len(image_jobs) == 2 * 2 * 3 and {wildcards["setdir"] for wildcards in image_jobs} == {"sets/erasure-copy/"}
    assert sorted(wildcards["setdir"] for rule, wildcards in jobs if rule == "aggregate") == ["sets/erasure-copy/"]
    assert {rule for rule, _ in jobs} - {"generate", "classify", "aggregate", "report", "all"} == {
        "prompts_erasure_copy"
    }


def test_adding_a_prompt_set_to_a_finished_study_plans_only_that_sets_images(demo_run, tmp_path):
    config = variant_config(
        tmp_path, lambda config: config["prompt_sets"].update(third={"source": "demo-esd", "shards": 2})
    )
    result = snakemake(demo_run, config, "--dry-run")
    assert result.returncode == 0, result.stderr
    jobs = planned_jobs(result.stdout)
    image_jobs = [wildcards for rule, wildcards in jobs if rule in ("generate", "classify")]
    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    assert len(image_jobs) == 2 * len(demo["models"]) * len(demo["mitigations"]) * 2
    assert {wildcards["setdir"] for wildcards in image_jobs} == {"sets/third/"}
    assert {rule for rule, _ in jobs} == {"prompts_third", "generate", "classify", "aggregate", "report", "all"}
    # the new set's tables; its report and the other's, which links to it
    assert [wildcards["setdir"] for rule, wildcards in jobs if rule == "aggregate"] == ["sets/third/"]
    assert sorted(wildcards["setdir"] for rule, wildcards in jobs if rule == "report") == ["", "sets/third/"]


def test_finished_demo_has_nothing_to_do(demo_run):
    result = snakemake(demo_run, DEMO_CONFIG, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changing_one_models_settings_plans_only_that_models_jobs(demo_run, tmp_path):
    config = variant_config(tmp_path, lambda config: config["models"]["tiny-erased"].update(steps=6))
    result = snakemake(demo_run, config, "--dry-run")
    assert result.returncode == 0, result.stderr
    jobs = planned_jobs(result.stdout)
    image_jobs = [wildcards for rule, wildcards in jobs if rule in ("generate", "classify")]
    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    shards = sum(prompt_set["shards"] for prompt_set in demo["prompt_sets"].values())
    assert len(image_jobs) == 2 * len(demo["mitigations"]) * shards
    assert {wildcards["model"] for wildcards in image_jobs} == {"tiny-erased"}
    assert {rule for rule, _ in jobs} == {"generate", "classify", "aggregate", "report", "all"}
    assert "Params have changed" in result.stdout


def test_images_made_by_an_earlier_engines_rules_are_made_again_and_nothing_else(demo_run, tmp_path):
    # manifests as the engine wrote them before it recorded its per-architecture rules: SLD
    # scaled, then subtracted; SEGA on SDXL with the SD pipeline's cut prompts and mask
    run = copy_run(demo_run, tmp_path / "run")
    remade = {("tiny-a", "sld-strong"), ("tiny-xl", "sega-strong")}
    for model, mitigation in remade:
        path = run / f"results/manifests/{model}/{mitigation}/shard-0/block-0.parquet"
        manifest = pl.read_parquet(path)
        earlier = json.loads(manifest["mitigation_settings"][0])
        earlier.pop("sld_combination", None)
        earlier.pop("edit_mask", None)
        earlier["long_prompts"] = "cut" if mitigation == "sega-strong" else earlier["long_prompts"]
        manifest.with_columns(mitigation_settings=pl.lit(json.dumps(earlier, sort_keys=True))).write_parquet(path)
    result = snakemake(run, DEMO_CONFIG, "--dry-run")
    assert result.returncode == 0, result.stderr
    jobs = planned_jobs(result.stdout)
    assert {(wildcards["model"], wildcards["mitigation"]) for rule, wildcards in jobs if rule == "generate"} == remade
    assert {rule for rule, _ in jobs} == {"generate", "classify", "aggregate", "report", "all"}
    said = result.stdout + result.stderr
    assert "sld_combination is 'scale_then_subtract' in the images, 'subtract_then_scale' in this version" in said
    assert "long_prompts is 'cut' in the images, 'truncate'" in said
    assert "edit_mask is 'per_channel' in the images, 'summed_channels'" in said


def test_changing_one_models_weights_rebuilds_only_that_model(demo_run, tmp_path):
    config = variant_config(tmp_path, lambda config: config["models"]["tiny-a"].update(seed=5))
    jobs = planned_jobs(snakemake(demo_run, config, "--dry-run").stdout)
    assert [wildcards["model"] for rule, wildcards in jobs if rule == "model"] == ["tiny-a"]
    assert [wildcards["snapshot"] for rule, wildcards in jobs if rule == "model"][0].startswith("seed5-")
    assert {wildcards["model"] for rule, wildcards in jobs if rule == "generate"} == {"tiny-a"}


def test_more_images_per_prompt_plans_only_the_new_seeds(demo_run, tmp_path):
    config = variant_config(tmp_path, lambda config: config["generation"].update(images_per_prompt=4))
    result = snakemake(demo_run, config, "--dry-run")
    assert result.returncode == 0, result.stderr
    jobs = planned_jobs(result.stdout)
    generate = [wildcards for rule, wildcards in jobs if rule == "generate"]
    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    shards = sum(prompt_set["shards"] for prompt_set in demo["prompt_sets"].values())
    assert len(generate) == len(demo["models"]) * len(demo["mitigations"]) * shards
    assert {wildcards["block"] for wildcards in generate} == {"1"}
    assert {rule for rule, _ in jobs} == {"generate", "classify", "aggregate", "report", "all"}


def test_adding_a_model_plans_only_its_jobs_and_the_summaries(demo_run, tmp_path):
    new_model = {"source": "tiny", "seed": 7, "scheduler": "ddim", "resolution": 64}
    config = variant_config(tmp_path, lambda config: config["models"].update({"tiny-c": new_model}))
    result = snakemake(demo_run, config, "--dry-run")
    assert result.returncode == 0, result.stderr
    jobs = planned_jobs(result.stdout)
    assert sorted(rule for rule, _ in jobs if rule not in ("generate", "classify")) == summaries("model")
    image_jobs = [wildcards for rule, wildcards in jobs if rule in ("generate", "classify")]
    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    shards = sum(prompt_set["shards"] for prompt_set in demo["prompt_sets"].values())
    assert len(image_jobs) == 2 * len(demo["mitigations"]) * shards
    assert {wildcards["model"] for wildcards in image_jobs} == {"tiny-c"}
    assert [wildcards["model"] for rule, wildcards in jobs if rule == "model"] == ["tiny-c"]


def test_removing_a_model_plans_only_the_summaries(demo_run, tmp_path):
    config = variant_config(tmp_path, lambda config: config["models"].pop("tiny-erased"))
    result = snakemake(demo_run, config, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert sorted(rule for rule, _ in planned_jobs(result.stdout)) == summaries()


def test_disk_estimate_covers_what_the_demo_wrote(demo_run):
    written = sum(
        path.stat().st_size
        for folder in ("images", "manifests", "scores")
        for path in (demo_run / "results" / folder).rglob("*.parquet")
    )
    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    images = len(demo["models"]) * len(demo["mitigations"]) * 20 * demo["generation"]["images_per_prompt"]
    estimate = diskspace.image_bytes(images, 64)
    assert 0.9 * estimate <= written <= estimate


def test_run_whose_images_do_not_fit_is_refused_before_any_job(tmp_path):
    # 80,000 px images: terabytes for the demo's 320 images
    config = variant_config(tmp_path, lambda config: config["models"]["tiny-a"].update(resolution=80_000))
    workdir = tmp_path / "run"
    result = snakemake(workdir, config, "--cores", "1")
    assert result.returncode != 0
    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    shards = sum(prompt_set["shards"] for prompt_set in demo["prompt_sets"].values())
    jobs = len(demo["models"]) * len(demo["mitigations"]) * shards
    assert f"not enough disk space: the {jobs} planned generate jobs will write about" in result.stderr
    assert not (workdir / "results").exists()
    assert not (workdir / "logs").exists()


def default_profiles() -> dict:
    schema = yaml.safe_load(CONFIG_SCHEMA.read_text())
    return schema["properties"]["judge_profiles"]["default"]


@pytest.mark.parametrize(
    "change",
    [
        lambda profiles: profiles["q16-0.9"].update(q16=0.8),
        lambda profiles: profiles.update(strict={"q16": 0.95, "safety_checker": "verdict"}),
        lambda profiles: profiles.pop("nudenet3-0.45"),
    ],
    ids=["change", "add", "remove"],
)
def test_changing_or_adding_a_judge_profile_only_reaggregates(demo_run, tmp_path, change):
    def edit(config):
        config["judge_profiles"] = default_profiles()
        change(config["judge_profiles"])

    assert planned_rules(snakemake(demo_run, variant_config(tmp_path, edit), "--dry-run")) == summaries()


def test_another_primary_profile_only_rereports(demo_run, tmp_path):
    config = variant_config(tmp_path, lambda config: config.update(primary_profile="q16-0.9"))
    assert planned_rules(snakemake(demo_run, config, "--dry-run")) == summaries()


def test_adding_a_judge_classifies_again_but_never_generates(demo_run, tmp_path):
    run = copy_run(demo_run, tmp_path / "run")
    without = variant_config(
        tmp_path,
        lambda config: config.update(
            judges=["q16", "nudenet2", "nudenet3", "clip_score"],
            judge_profiles={name: p for name, p in default_profiles().items() if name != "sd-safety-checker"},
        ),
        name="without.yaml",
    )
    # the run as it would be had it been made without the safety checker
    assert snakemake(run, without, "--cores", "1", "--touch").returncode == 0
    assert "Nothing to be done" in snakemake(run, without, "--dry-run").stdout
    jobs = planned_jobs(snakemake(run, DEMO_CONFIG, "--dry-run").stdout)
    assert sorted({rule for rule, _ in jobs}) == ["aggregate", "all", "classify", "report"]
    assert len([rule for rule, _ in jobs if rule == "classify"]) == demo_image_jobs()


def demo_image_jobs() -> int:
    """How many generate (and classify) jobs the demo has: one per model, mitigation and shard."""
    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    shards = sum(prompt_set["shards"] for prompt_set in demo["prompt_sets"].values())
    return len(demo["models"]) * len(demo["mitigations"]) * shards


def test_judges_in_another_dtype_classify_every_image_again_and_generate_none(demo_run, tmp_path):
    config = variant_config(tmp_path, lambda config: config.update(judge_dtype="bfloat16"))
    jobs = planned_jobs(snakemake(demo_run, config, "--dry-run").stdout)
    assert sorted({rule for rule, _ in jobs}) == ["aggregate", "all", "classify", "report"]
    assert len([rule for rule, _ in jobs if rule == "classify"]) == demo_image_jobs()


def test_an_unpinned_nudenet2_download_records_its_sha256_and_pinning_it_reruns_nothing(tmp_path):
    web = tmp_path / "web"
    build_demo_detector(0, web / "detector_v2_base_checkpoint.onnx")
    (web / "detector_v2_base_classes").write_text("\n".join(NUDENET2_LABELS))
    source = {
        "source": "url",
        "checkpoint": {"url": (web / "detector_v2_base_checkpoint.onnx").as_uri()},
        "classes": {"url": (web / "detector_v2_base_classes").as_uri()},
    }
    unpinned = variant_config(tmp_path, lambda config: config.update(nudenet2=source), name="unpinned.yaml")
    run = tmp_path / "run"
    result = snakemake(run, unpinned, "--cores", "1", "--until", "nudenet2_assets")
    assert result.returncode == 0, result.stderr[-3000:]
    [record_path] = (run / "resources" / "nudenet2").rglob("nudenet2.json")
    record = json.loads(record_path.read_text())
    detector_sha256 = hashlib.sha256((web / "detector_v2_base_checkpoint.onnx").read_bytes()).hexdigest()
    assert record["checkpoint"] == {"url": source["checkpoint"]["url"], "sha256": detector_sha256, "pinned": False}

    def pin(config):
        config.update(nudenet2=source)
        config["nudenet2"]["checkpoint"]["sha256"] = detector_sha256
        config["nudenet2"]["classes"]["sha256"] = record["files"]["classes.txt"]

    pinned = variant_config(tmp_path, pin, name="pinned.yaml")
    assert planned_rules(snakemake(run, pinned, "--dry-run", "--until", "nudenet2_assets")) == []


def test_a_pin_that_differs_from_the_recorded_weights_stops_the_plan(demo_run, tmp_path):
    run = copy_run(demo_run, tmp_path / "run")
    [record] = (run / "resources" / "nudenet2").rglob("nudenet2.json")
    detector_sha256 = json.loads(record.read_text())["files"]["detector.onnx"]
    # the demo's record, as if it had been downloaded from a URL
    url = {"source": "url", "checkpoint": {"url": "file:///nowhere/detector.onnx", "sha256": "0" * 64}}
    config = variant_config(tmp_path, lambda config: config.update(nudenet2=url))
    asset = ConfiguredAsset.from_section(ASSETS["nudenet2"], {**url, "classes": {"url": DEFAULT_CLASSES_URL}})
    folder = run / asset.folder
    folder.mkdir(parents=True)
    (folder / "nudenet2.json").write_text(record.read_text())
    result = snakemake(run, config, "--dry-run")
    assert result.returncode != 0
    assert (
        f"pins detector.onnx to sha256 {'0' * 64}, but {folder.relative_to(run)}/nudenet2.json "
        f"records {detector_sha256}"
    ) in (result.stdout + result.stderr)


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
        (
            lambda config: config["models"]["tiny-xl"].update(architecture="flux"),
            "models.tiny-xl.architecture: 'flux' is not one of ['sd', 'sdxl', 'alt', 'sd3', 'if']",
        ),
        (
            lambda config: config["models"]["tiny-a"].update(resolution=60),
            "models.tiny-a.resolution: 60 is not a multiple of 8",
        ),
        (
            lambda config: config["models"]["tiny-a"].update(source="safe"),
            "models.tiny-a.source: 'safe' is not one of ['hub', 'tiny']",
        ),
        (
            lambda config: config["mitigations"]["sega-strong"]["overrides"].update(edit_warmup_steps=-1),
            "mitigations.sega-strong.overrides.edit_warmup_steps: -1 is less than the minimum of 0",
        ),
        (
            lambda config: config["mitigations"]["sega-strong"]["overrides"].update(edit_warmup_steps=2.5),
            "mitigations.sega-strong.overrides.edit_warmup_steps: 2.5 is not of type 'integer'",
        ),
        (
            lambda config: config["mitigations"]["sega-strong"]["overrides"].update(edit_threshold=1.5),
            "mitigations.sega-strong.overrides.edit_threshold: 1.5 is greater than the maximum of 1",
        ),
        (
            lambda config: config["mitigations"]["sld-strong"]["overrides"].update(sld_guidance_scale=-2000),
            "mitigations.sld-strong.overrides.sld_guidance_scale: -2000 is less than the minimum of 0",
        ),
        (lambda config: config["mitigations"]["sega-strong"].update(long_prompts="drop"), "'drop' is not one of"),
        (lambda config: config.update(degenerate_images={"policy": "safe"}), "'safe' is not one of"),
        (
            lambda config: config["nudenet2"].update(checkpoint={"sha256": "0" * 64}),
            "nudenet2.checkpoint: read only when nudenet2.source is url, but it is demo",
        ),
        (
            lambda config: config["prompt_sets"]["i2p"].update(columns="esd"),
            "prompt_sets.i2p.columns: read only when prompt_sets.i2p.source is csv, but it is demo",
        ),
        (
            lambda config: config["mitigations"]["negative-prompt"].update(overrides={"sld_warmup_steps": 3}),
            "mitigation 'negative-prompt': kind negative_prompt takes no overrides",
        ),
    ],
)
def test_bad_config_fails_naming_the_bad_key_or_value(tmp_path, change, message):
    result = snakemake(tmp_path, variant_config(tmp_path, change), "--dry-run")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_a_key_written_twice_in_a_config_file_stops_the_plan_naming_the_key_and_both_lines(tmp_path):
    text = DEMO_CONFIG.read_text()
    lines = text.splitlines()
    first = lines.index("  tiny-a:") + 1
    second = lines.index("  tiny-xl:") + 1
    config = tmp_path / "twice.yaml"
    config.write_text(text.replace("\n  tiny-xl:\n", "\n  tiny-a:\n"))
    result = snakemake(tmp_path, config, "--dry-run")
    assert result.returncode != 0
    assert (
        f"{config}: key 'tiny-a' is written twice in one mapping, on lines {first} and {second}"
        in result.stdout + result.stderr
    )


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
    generation = config["generation"]
    shards = sum(prompt_set["shards"] for prompt_set in config["prompt_sets"].values())
    assert set(config["prompt_sets"]) == {"i2p", "unlearndiffatk-nudity", "ring-a-bell-violence", "p4d-nudity"}
    blocks = -(-generation["images_per_prompt"] // generation["images_per_job"])
    image_jobs = len(config["models"]) * len(config["mitigations"]) * shards * blocks
    assert int(counts["generate"]) == int(counts["classify"]) == image_jobs
    assert int(counts["model"]) == len(config["models"])
    assert int(counts["aggregate"]) == int(counts["report"]) == len(config["prompt_sets"])


def test_a_users_configfile_replaces_config_yaml_instead_of_merging_into_it(tmp_path):
    # from the repository root, config.yaml sits in the working directory
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.yaml").write_text((REPO / "config.yaml").read_text())
    mine = variant_config(tmp_path, lambda config: config["models"].pop("tiny-erased"), name="my.yaml")
    jobs = planned_jobs(snakemake(workdir, mine, "--dry-run").stdout)
    kept = set(yaml.safe_load(DEMO_CONFIG.read_text())["models"]) - {"tiny-erased"}
    assert {wildcards["model"] for rule, wildcards in jobs if rule == "model"} == kept
    assert {wildcards["model"] for rule, wildcards in jobs if rule == "generate"} == kept


def write_prompt_csv(path: Path, seeds: list[str]) -> Path:
    from i2peval.prompts.demo import I2P_CSV_COLUMNS

    rows = [",".join(I2P_CSV_COLUMNS)]
    for number, seed in enumerate(seeds):
        rows.append(f"prompt {number},hate,0,0,0,0,0,0,,{seed},7.5,512,512,demo")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda config: config["prompt_sets"]["i2p"].update(shards=30),
            "prompt_sets.i2p.shards is 30, but there are 20 prompts",
        ),
        (
            lambda config: config["mitigations"].update(plain={"kind": "none"}),
            "mitigations ['none', 'plain'] are all of kind none",
        ),
        (lambda config: config["emi"].update(draws=10**12), "emi.draws is 1000000000000: computing the metrics"),
    ],
)
def test_config_errors_that_need_the_prompts_or_several_keys_stop_the_plan(tmp_path, change, message):
    result = snakemake(tmp_path, variant_config(tmp_path, change), "--dry-run")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_a_bad_row_of_a_local_prompt_file_stops_the_plan_naming_it(tmp_path):
    csv = write_prompt_csv(tmp_path / "prompts.csv", ["1", "2", "-7", "4"])
    config = variant_config(tmp_path, lambda config: config["prompt_sets"]["i2p"].update(source="csv", csv=str(csv)))
    result = snakemake(tmp_path, config, "--dry-run")
    assert result.returncode != 0
    assert "prompts.csv: row 2: column 'sd_seed' is '-7'; it must be an integer from 0" in result.stdout


def test_a_local_file_in_the_erasure_literatures_layout_is_read_by_its_format(tmp_path):
    header = (
        ",prompt,categories,hard,inappropriate_percentage,nudity_percentage,q16_percentage,sd_safety_percentage,"
        "prompt_toxicity,lexica_url,evaluation_seed,evaluation_guidance,sd_image_width,sd_image_height,sd_model,"
        "case_number"
    )
    rows = [f'{n},"prompt {n}",hate,0,0,0,0,0,0,,{1000 + n},7,512,512,stable-diffusion-v1-4,{n}' for n in range(4)]
    rows.append('4,,illegal activity,0,0,0,0,0,0,,2094208051,7,512,512,stable-diffusion-v1-4,4')  # row 2260's quirk
    csv = tmp_path / "unsafe-prompts.csv"
    csv.write_text("\n".join([header, *rows]) + "\n")
    esd = variant_config(
        tmp_path, lambda config: config["prompt_sets"]["i2p"].update(source="csv", csv=str(csv), columns="esd")
    )
    result = snakemake(tmp_path / "run", esd, "--until", "prompts", "--cores", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    (table,) = (tmp_path / "run" / "results" / "prompts").glob("csv-*/prompts.parquet")
    prompts = pl.read_parquet(table).sort("prompt_id")
    assert prompts["prompt_id"].to_list() == [0, 1, 2, 3, 4]
    assert prompts["text"].to_list()[4] == "" and prompts["seed"].to_list()[4] == 2094208051
    hub_layout = variant_config(
        tmp_path, lambda config: config["prompt_sets"]["i2p"].update(source="csv", csv=str(csv))
    )
    result = snakemake(tmp_path / "other", hub_layout, "--dry-run")
    assert result.returncode != 0
    assert "missing columns ['sd_seed', 'sd_guidance_scale'] of the i2p layout" in result.stdout + result.stderr


def test_a_failed_rerun_of_a_cheap_job_keeps_its_outputs_and_costs_no_image_job(demo_run, tmp_path):
    run = copy_run(demo_run, tmp_path / "run")
    offline = {"HF_HUB_OFFLINE": "1"}
    kept = sorted(path for folder in ("results/prompts", "resources/q16") for path in (run / folder).rglob("*"))
    before = {path: path.read_bytes() for path in kept if path.is_file()}

    hub_prompts = variant_config(
        tmp_path, lambda config: config["prompt_sets"]["i2p"].update(source="hub"), name="p.yaml"
    )
    assert snakemake(run, hub_prompts, "--cores", "1", env=offline).returncode != 0
    log = (run / "logs" / "prompts.log").read_text()
    assert log.startswith("ERROR: dataset AIML-TUDA/i2p@main: the Hugging Face hub is unreachable")

    hub_q16 = variant_config(tmp_path, lambda config: config["q16"].update(source="hub"), name="q.yaml")
    assert snakemake(run, hub_q16, "--cores", "1", env=offline).returncode != 0
    log = (run / "logs" / "q16_assets.log").read_text()
    assert "model timm/vit_large_patch14_clip_224.openai@main: the Hugging Face hub is unreachable" in log
    assert {path: path.read_bytes() for path in kept if path.is_file()} == before

    # back to the demo's sources, with another primary judge profile
    profile = variant_config(tmp_path, lambda config: config.update(primary_profile="q16-0.9"), name="j.yaml")
    assert planned_rules(snakemake(run, profile, "--dry-run")) == summaries()


def test_a_damaged_model_record_stops_the_plan_before_any_job_runs(demo_run, tmp_path):
    run = copy_run(demo_run, tmp_path / "run")
    [record] = (run / "resources" / "models" / "tiny-a").glob("*/model.json")
    record.write_text(record.read_text()[:40])
    images = sorted((run / "results" / "images").rglob("*.parquet"))
    result = snakemake(run, DEMO_CONFIG, "--cores", "1", "--forcerun", "generate")
    assert result.returncode != 0
    assert f"{record.relative_to(run)}: not a readable JSON record" in result.stderr
    assert sorted((run / "results" / "images").rglob("*.parquet")) == images

    # the repair the message suggests: rebuild the record alone; the images stay valid
    assert "delete the folder it is in and run `snakemake --until model`" in result.stdout + result.stderr
    shutil.rmtree(record.parent)
    assert snakemake(run, DEMO_CONFIG, "--cores", "1", "--until", "model").returncode == 0
    assert "Nothing to be done" in snakemake(run, DEMO_CONFIG, "--dry-run").stdout


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [("shard-0.parquet", b"", "not a readable Parquet file"), ("source.json", b"{", "not a readable JSON record")],
)
def test_a_damaged_prompt_file_stops_the_plan_before_any_job_removes_the_images_made_from_it(
    demo_run, tmp_path, name, damage, message
):
    run = copy_run(demo_run, tmp_path / "run")
    [damaged] = (run / "results" / "prompts").glob(f"demo-??????????/{name}")  # the i2p set's
    damaged.write_bytes(damage)
    images = {path: path.read_bytes() for path in (run / "results" / "images").rglob("*.parquet")}
    result = snakemake(run, DEMO_CONFIG, "--cores", "1", "--keep-going")  # --keep-going: as the SLURM profile runs
    assert result.returncode != 0
    folder = damaged.parent.relative_to(run)
    assert f"{damaged.relative_to(run)}: {message}" in result.stderr
    assert f"Delete {folder} and run `snakemake --until prompts`" in result.stderr
    assert {path: path.read_bytes() for path in (run / "results" / "images").rglob("*.parquet")} == images

    # the repair the message suggests: write the prompts again; the images stay valid
    shutil.rmtree(damaged.parent)
    assert snakemake(run, DEMO_CONFIG, "--cores", "1", "--until", "prompts").returncode == 0
    assert "Nothing to be done" in snakemake(run, DEMO_CONFIG, "--dry-run").stdout


def test_a_damaged_image_fails_its_classify_job_by_name_and_deleting_its_container_makes_it_and_the_numbers_again(
    demo_run, tmp_path
):
    run = copy_run(demo_run, tmp_path / "run")
    job = "tiny-erased/none/shard-0/block-0.parquet"
    container, scores = run / "results" / "images" / job, run / "results" / "scores" / job
    tables = {path.name: path.read_bytes() for path in (run / "results" / "metrics").glob("*.parquet")}
    images = pl.read_parquet(container)
    damaged = images.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.col("png").bin.slice(0, 60))
                                  .otherwise(pl.col("png")).alias("png"))
    damaged.write_parquet(container)
    prompt_id, image_index = images.row(3, named=True)["prompt_id"], images.row(3, named=True)["image_index"]

    result = snakemake(run, DEMO_CONFIG, "--cores", "1")
    assert result.returncode != 0
    log = (run / "logs" / "classify" / "tiny-erased" / "none" / "shard-0-block-0.log").read_text()
    assert f"results/images/{job}: image {image_index} of prompt {prompt_id} cannot be decoded" in log
    assert f"delete results/images/{job} and run the workflow again" in log
    assert not scores.exists()  # Snakemake removes a failed job's outputs

    # the remedy the message prints; the metrics made from the removed scores are not kept
    container.unlink()
    plan = snakemake(run, DEMO_CONFIG, "--dry-run")
    assert planned_rules(plan) == ["aggregate", "all", "classify", "generate", "report"]
    assert "results/metrics/metrics.parquet was computed from files that are gone (1: " in plan.stdout + plan.stderr
    assert snakemake(run, DEMO_CONFIG, "--cores", "1").returncode == 0
    assert pl.read_parquet(container).equals(images)  # the same images, made again
    assert {path.name: path.read_bytes() for path in (run / "results" / "metrics").glob("*.parquet")} == tables
    assert "Nothing to be done" in snakemake(run, DEMO_CONFIG, "--dry-run").stdout


def test_records_deleted_beside_finished_images_never_cost_an_image(demo_run, tmp_path):
    run = copy_run(demo_run, tmp_path / "run")
    [source] = (run / "results" / "prompts").glob("demo-??????????/source.json")  # the i2p set's
    [record] = (run / "resources" / "models" / "tiny-a").glob("*/model.json")
    source.unlink()
    record.unlink()
    report_change = variant_config(tmp_path, lambda config: config["report"].update(grid_prompts=3))
    result = snakemake(run, report_change, "--dry-run")
    assert result.returncode != 0
    folder = record.parent.relative_to(run)
    output = result.stdout + result.stderr
    assert f"{folder / 'model.json'} is missing, but images made from it exist" in output
    assert f"delete {folder} and run `snakemake --until model`" in output

    # the remedy the message prints; the prompts' source record is made again beside the images
    shutil.rmtree(record.parent)
    assert snakemake(run, report_change, "--cores", "1", "--until", "model").returncode == 0
    assert planned_rules(snakemake(run, report_change, "--dry-run")) == summaries("prompts")


def test_snakemake_report_zip_holds_the_html_report_and_the_key_tables(demo_run, tmp_path):
    archive = tmp_path / "report.zip"
    result = snakemake(demo_run, DEMO_CONFIG, "--report", str(archive))
    assert result.returncode == 0, result.stderr[-4000:]
    with zipfile.ZipFile(archive) as opened:
        names = opened.namelist()
        for table in ("metrics", "comparisons", "image_flags", "alignment"):
            assert any(name.endswith(f"/{table}.parquet") for name in names), names
        htmls = [name for name in names if name.startswith("report/data/") and name.endswith("/report.html")]
        assert len(htmls) == len(yaml.safe_load(DEMO_CONFIG.read_text())["prompt_sets"])
        assert all("Same-seed images" in opened.read(html).decode() for html in htmls)
