"""Files gone from a finished run, found when the workflow is planned: results computed
from files that are gone are made again (`Study.stale_result`) instead of presented; a
prompt shard or model record gone beside the images made from it stops the plan with a
repair that keeps them (`Study.check_gone_inputs`)."""

import json
from pathlib import Path

import pytest
import yaml

from i2peval.config import validate_config
from i2peval.metrics.aggregate import SCORE_FILES_KEY
from i2peval.plan import IMAGES, SCORES, metrics_tables
from i2peval.schemas import METRICS, write_table
from i2peval.storage import RecordError
from i2peval.study import Study

DEMO_CONFIG = Path(__file__).parent.parent / "demo" / "config.yaml"
METRICS_TABLE = str(metrics_tables("results/metrics")["metrics"])


def demo_study() -> Study:
    return Study.from_config(validate_config(yaml.safe_load(DEMO_CONFIG.read_text())))


def write_metrics(run: Path, score_files: list[str]) -> None:
    (run / METRICS_TABLE).parent.mkdir(parents=True, exist_ok=True)
    metadata = {SCORE_FILES_KEY: json.dumps(score_files)}
    write_table(METRICS.empty_table(), run / METRICS_TABLE, METRICS, metadata=metadata)


def write_scores(run: Path, paths: list[str]) -> None:
    for path in paths:
        (run / path).parent.mkdir(parents=True, exist_ok=True)
        (run / path).write_bytes(b"scores")


def test_metrics_computed_from_a_score_file_that_is_gone_are_stale(tmp_path):
    study = demo_study()
    scores = [job.path(SCORES) for job in study.image_jobs()]
    write_metrics(tmp_path, scores)
    write_scores(tmp_path, scores)
    assert study.stale_result(METRICS_TABLE, tmp_path) is None
    (tmp_path / scores[3]).unlink()
    stale = study.stale_result(METRICS_TABLE, tmp_path)
    assert stale.missing == [scores[3]]
    assert stale.describe() == f"{METRICS_TABLE} was computed from files that are gone (1: {scores[3]})"


def test_score_files_the_metrics_never_read_or_the_study_no_longer_plans_leave_them_current(tmp_path):
    study = demo_study()
    scores = [job.path(SCORES) for job in study.image_jobs()]
    # a model added since (its scores are yet to be made), a model removed since (its scores deleted)
    write_metrics(tmp_path, [*scores[:-3], "results/scores/removed/none/shard-0/block-0.parquet"])
    write_scores(tmp_path, scores[:-3])
    assert study.stale_result(METRICS_TABLE, tmp_path) is None


def test_images_deleted_to_save_space_leave_their_scores_and_metrics_current(tmp_path):
    study = demo_study()
    scores = [job.path(SCORES) for job in study.image_jobs()]
    write_metrics(tmp_path, scores)
    write_scores(tmp_path, scores)
    assert not (tmp_path / "results" / "images").exists()
    assert study.stale_result(METRICS_TABLE, tmp_path) is None


def test_a_report_whose_tables_are_gone_is_stale_and_a_missing_result_is_not(tmp_path):
    study = demo_study()
    assert study.stale_result(study.report_path, tmp_path) is None
    assert study.stale_result(METRICS_TABLE, tmp_path) is None
    (tmp_path / study.report_path).parent.mkdir(parents=True)
    (tmp_path / study.report_path).write_text("<html></html>")
    stale = study.stale_result(study.report_path, tmp_path)
    assert stale.missing == [str(path) for path in metrics_tables("results/metrics").values()]
    assert stale.describe().startswith(f"{study.report_path} was computed from files that are gone (4: ")
    assert stale.describe().endswith(" and 1 more)")


def test_a_metrics_table_that_records_no_score_files_is_left_to_the_checks_that_read_it(tmp_path):
    study = demo_study()
    (tmp_path / METRICS_TABLE).parent.mkdir(parents=True)
    (tmp_path / METRICS_TABLE).write_bytes(b"not parquet")
    assert study.stale_result(METRICS_TABLE, tmp_path) is None


def touch(run: Path, *paths: str) -> None:
    for path in paths:
        (run / path).parent.mkdir(parents=True, exist_ok=True)
        (run / path).write_bytes(b"x")


def test_a_model_record_deleted_beside_its_snapshot_and_images_stops_the_plan(tmp_path):
    study = demo_study()
    model = study.models["tiny-a"]
    touch(tmp_path, *(job.path(IMAGES) for job in study.image_jobs()), f"{Path(model.record_path).parent}/snapshot/x")
    with pytest.raises(RecordError, match=rf"^{model.record_path} is missing, but images made from it exist .*"
                       rf"delete {Path(model.record_path).parent} and run `snakemake --until model`"):
        study.check_gone_inputs(tmp_path)


def test_a_prompt_shard_deleted_beside_the_other_prompt_files_and_images_stops_the_plan(tmp_path):
    study = demo_study()
    touch(tmp_path, *(job.path(IMAGES) for job in study.image_jobs()), study.prompts.table_path)
    named = rf"^{study.prompts.shard_path(0)} is missing, .* `snakemake --until prompts`"
    with pytest.raises(RecordError, match=named):
        study.check_gone_inputs(tmp_path)


def test_folders_a_failed_job_left_empty_for_new_settings_do_not_stop_the_plan(tmp_path):
    study = demo_study()
    touch(tmp_path, *(job.path(IMAGES) for job in study.image_jobs()))
    for folder in (Path(study.models["tiny-a"].record_path).parent, Path(study.prompts.table_path).parent):
        (tmp_path / folder).mkdir(parents=True)
    study.check_gone_inputs(tmp_path)

