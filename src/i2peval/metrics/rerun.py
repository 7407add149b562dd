"""The metrics of a finished run, recomputed without Snakemake (``i2peval metrics``).

From a run's stored scores, manifests and prompt table, read where the workflow wrote
them for the given configuration (validated against the workflow's schema, defaults
filled in), every input checked as the aggregate rule checks it; or from stored image
flags, e.g. a harness run read by ``i2peval import-harness-csv``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from i2peval import plan
from i2peval.prompts.source import prompt_table
from i2peval.errors import I2PEvalError
from i2peval.generation.mitigations import baseline_mitigation, resolve_mitigations
from i2peval.judges.assets import judging
from i2peval.metrics.profiles import profiles_from_config
from i2peval.metrics.aggregate import ScoreFile, StudySettings, aggregate, study_tables
from i2peval.metrics.rates import BootstrapSettings, EmiSettings
from i2peval.schemas import ALIGNMENT, COMPARISONS, FLAG_JUDGES, IMAGE_FLAGS, METRICS, PROMPTS, read_table, write_table

OUTPUTS = ("metrics", "flags", "comparisons", "alignment")


class RunError(I2PEvalError):
    """A run or its configuration cannot be read."""


def study_settings(config: dict[str, Any] | None, baseline: str | None = None) -> StudySettings:
    """The configuration's aggregation settings (defaults without one); `baseline` overrides
    the mitigation of kind none."""
    if config is None:
        return StudySettings(baseline=baseline)
    return StudySettings(
        emi=EmiSettings(**config["emi"]),
        bootstrap=BootstrapSettings(**config["bootstrap"]),
        degenerate_policy=config["degenerate_images"]["policy"],
        baseline=baseline or baseline_mitigation(resolve_mitigations(config)),
    )


def output_paths(output_dir: Path) -> dict[str, Path]:
    return {name: output_dir / f"{'image_flags' if name == 'flags' else name}.parquet" for name in OUTPUTS}


def metrics_of_run(config: dict[str, Any], directory: Path, output_dir: Path, baseline: str | None = None) -> dict[str, Path]:
    """Recompute the aggregate rule's outputs of the run in `directory` into `output_dir`."""
    jobs = plan.image_jobs(**plan.image_layout(config))
    prompts_path = directory / prompt_table(config)
    needed = [
        prompts_path,
        *(directory / job.path(plan.SCORES) for job in jobs),
    ]
    missing = [path for path in needed if not path.is_file()]
    if missing:
        raise RunError(
            f"{missing[0]}: missing ({len(missing)} of the run's {len(needed)} prompt and score files are): "
            "is this the run's directory and configuration, and has the run scored every image?"
        )
    outputs = output_paths(output_dir)
    aggregate(
        score_files=[
            ScoreFile(
                directory / job.path(plan.SCORES),
                job.model, job.mitigation, job.shard, job.image_indices,
            )
            for job in jobs
        ],
        prompts_path=prompts_path,
        manifest_paths=[
            directory / job.path(plan.MANIFESTS) for job in jobs
        ],
        model_record_paths={
            name: directory / path for name, path in plan.model_records(config).items()
        },
        profiles=profiles_from_config(judging(config)),
        alignment="clip_score" in config["judges"],
        settings=study_settings(config, baseline),
        outputs=outputs,
    )
    return outputs


def metrics_of_flags(
    flags_path: Path, prompts_path: Path, output_dir: Path, config: dict[str, Any] | None, baseline: str | None
) -> dict[str, Path]:
    """METRICS and COMPARISONS of stored IMAGE_FLAGS (each profile judged as a whole: the
    judge columns that are null throughout belong to judges it does not read)."""
    flags = pl.from_arrow(read_table(flags_path, IMAGE_FLAGS))
    prompts = pl.from_arrow(read_table(prompts_path, PROMPTS))
    unknown = flags.join(prompts, on="prompt_id", how="anti")
    if unknown.height:
        raise RunError(f"{flags_path}: prompt_id {unknown['prompt_id'][0]} is not in {prompts_path}")
    read = flags.group_by("profile").agg(pl.col(judge).is_not_null().any() for judge in FLAG_JUDGES)
    profile_judges = {
        row["profile"]: [judge for judge in FLAG_JUDGES if row[judge]] for row in read.iter_rows(named=True)
    }
    settings = study_settings(config, baseline)
    mitigations = set(flags["mitigation"])
    if settings.baseline is not None and settings.baseline not in mitigations:
        raise RunError(f"{flags_path}: the baseline {settings.baseline!r} is not one of its mitigations {sorted(mitigations)}")
    metrics, comparisons, _ = study_tables(flags, prompts, profile_judges, settings)
    outputs = output_paths(output_dir)
    write_table(metrics.to_arrow(), outputs["metrics"], METRICS)
    write_table(comparisons.to_arrow(), outputs["comparisons"], COMPARISONS)
    write_table(ALIGNMENT.empty_table(), outputs["alignment"], ALIGNMENT)
    write_table(flags.to_arrow(), outputs["flags"], IMAGE_FLAGS)
    return outputs
