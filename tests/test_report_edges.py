"""Every sentence the report prints is true of the run, also on edge runs made from the
finished demo run: every image degenerate, every image unscored, one condition, no
baseline, one prompt. Metrics and report are recomputed in process (`i2peval metrics`
and `i2peval report` do the same)."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import yaml
from workflow_runs import DEMO_CONFIG, copy_run

from i2peval.config import validate_config
from i2peval.metrics.rerun import metrics_of_run
from i2peval.report.run import report_files, report_run
from i2peval.study import Study

SCORE_KEYS = ("prompt_set", "model", "mitigation", "prompt_id", "image_index")


def rewrite(folder: Path, change) -> None:
    for path in folder.rglob("*.parquet"):
        change(pl.read_parquet(path)).write_parquet(path)


def edge_report(demo_run: Path, tmp_path: Path, change_run=None, change_config=None) -> str:
    """The report's text (tags and image data left out) of a copy of the demo run."""
    run = copy_run(demo_run, tmp_path / "run")
    if change_run:
        change_run(run)
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    if change_config:
        change_config(config)
    study = Study.from_config(validate_config(config), run)
    metrics_dir = tmp_path / "metrics"
    metrics_of_run(study.run_files(run), study.judging, metrics_dir)
    report_run(study, report_files(study, run, metrics_dir), tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    images = html.count("<img ")
    text = re.sub(r"<style.*?</style>|<script.*?</script>", "", html, flags=re.DOTALL)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))
    return f"{text} [{images} images]"


FALSE_WHEN_MEASURED = ("report.grid_prompts is 0", "the clip_score judge is not among the configured judges")


def test_a_run_of_degenerate_images_says_what_was_not_measured_and_why(demo_run, tmp_path):
    def all_black(run):
        rewrite(run / "results" / "manifests", lambda frame: frame.with_columns(degenerate=pl.lit("all-black image")))

    text = edge_report(demo_run, tmp_path, all_black)
    assert "Not measured: no image of these conditions has a verdict under the primary profile" in text
    assert "tiny-a / none: all 40 of its images are degenerate, and the policy “exclude” leaves them out" in text
    assert "Nothing could be compared: no image has a verdict under the primary profile both with a mitigation" in text
    assert "Not measured: no image has a CLIPScore that counts (each is left out as degenerate, or unscored)" in text
    assert "[72 images]" in text  # every condition's images in the same-seed grid: 3 models x 4 x 6 prompts
    for false in ("Only the baseline", *FALSE_WHEN_MEASURED):
        assert false not in text


def test_a_run_without_scores_is_measured_as_unscored(demo_run, tmp_path):
    def without_scores(frame):
        return frame.with_columns(
            pl.lit(None, dtype).alias(name) for name, dtype in frame.schema.items() if name not in SCORE_KEYS
        )

    def unscored(run):
        rewrite(run / "results" / "scores", without_scores)

    text = edge_report(demo_run, tmp_path, unscored)
    assert "Nothing could be compared" in text
    assert "tiny-a none 20 40 40 0 n/a" in text  # prompts, images, unscored, flagged, IP
    for false in ("Not measured: no image of these conditions", "Only the baseline", *FALSE_WHEN_MEASURED):
        assert false not in text


def test_a_run_of_the_baseline_alone_says_there_is_nothing_to_compare(demo_run, tmp_path):
    def baseline_only(config):
        config["models"] = {"tiny-a": config["models"]["tiny-a"]}
        config["mitigations"] = {"none": config["mitigations"]["none"]}

    text = edge_report(demo_run, tmp_path, change_config=baseline_only)
    assert "Only the baseline “none” is configured: nothing to compare." in text
    assert "[6 images]" in text
    for false in ("Nothing could be compared", "Not measured", *FALSE_WHEN_MEASURED):
        assert false not in text


def test_a_run_without_a_baseline_compares_nothing_and_says_so(demo_run, tmp_path):
    def no_baseline(config):
        config["mitigations"] = {"sld-strong": config["mitigations"]["sld-strong"]}

    text = edge_report(demo_run, tmp_path, change_config=no_baseline)
    assert "No configured condition is without mitigation (kind “none”), so no mitigation is compared." in text
    for false in ("against None", "“None”", "Each mitigation is compared", "paired change", *FALSE_WHEN_MEASURED):
        assert false not in text


def test_a_run_of_one_prompt_reports_it(demo_run, tmp_path):
    def first_prompt(run):
        for folder in ("manifests", "scores", "prompts"):
            rewrite(run / "results" / folder, lambda frame: frame.filter(pl.col("prompt_id") == 0))

    text = edge_report(demo_run, tmp_path, first_prompt)
    assert "tiny-a none 1 2 0" in text  # one prompt, two images, none unscored
    assert "[12 images]" in text
    for false in ("Not measured", "Nothing could be compared", "Only the baseline", *FALSE_WHEN_MEASURED):
        assert false not in text
