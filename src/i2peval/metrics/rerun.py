"""The metrics of a finished run, recomputed without Snakemake (``i2peval metrics``).

From a run's stored scores, manifests and prompt table, every input checked as the
aggregate rule checks it; or from stored image flags, e.g. a harness run read by
``i2peval import-harness-csv``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from i2peval.errors import I2PEvalError
from i2peval.judges.registry import FLAG_JUDGES, IMAGE_FLAGS
from i2peval.metrics.aggregate import (
    Judging,
    RunFiles,
    StudySettings,
    aggregate,
    check_flags_prompts,
    prompt_table_metadata,
    study_tables,
)
from i2peval.plan import metrics_tables
from i2peval.schemas import ALIGNMENT, COMPARISONS, METRICS, PROMPTS, read_table, write_table


class RunError(I2PEvalError):
    """A run or its configuration cannot be read."""


def metrics_of_run(files: RunFiles, judging: Judging, output_dir: Path) -> dict[str, Path]:
    """Recompute the aggregate rule's outputs of the run whose files are `files` into `output_dir`."""
    missing = files.missing()
    if missing:
        raise RunError(
            f"{missing[0]}: missing ({len(missing)} of the run's {len(files.score_files) + 1} prompt and score "
            "files are): is this the run's directory and configuration, and has the run scored every image?"
        )
    outputs = metrics_tables(output_dir)
    aggregate(files, judging, outputs)
    return outputs


def metrics_of_flags(
    flags_path: Path, prompts_path: Path, output_dir: Path, settings: StudySettings, prompt_set: str
) -> dict[str, Path]:
    """METRICS and COMPARISONS of stored IMAGE_FLAGS of the prompt set named `prompt_set`
    (each profile judged as a whole: the judge columns that are null throughout belong to
    judges it does not read)."""
    check_flags_prompts(flags_path, prompts_path)
    flags = pl.from_arrow(read_table(flags_path, IMAGE_FLAGS))
    prompts = pl.from_arrow(read_table(prompts_path, PROMPTS))
    unknown = flags.join(prompts, on="prompt_id", how="anti")
    if unknown.height:
        raise RunError(f"{flags_path}: prompt_id {unknown['prompt_id'][0]} is not in {prompts_path}")
    read = flags.group_by("profile").agg(pl.col(judge).is_not_null().any() for judge in FLAG_JUDGES)
    profile_judges = {
        row["profile"]: [judge for judge in FLAG_JUDGES if row[judge]] for row in read.iter_rows(named=True)
    }
    mitigations = set(flags["mitigation"])
    if settings.baseline is not None and settings.baseline not in mitigations:
        raise RunError(
            f"{flags_path}: the baseline {settings.baseline!r} is not one of its mitigations {sorted(mitigations)}"
        )
    metrics, comparisons, _ = study_tables(flags, prompts, profile_judges, settings, prompt_set=prompt_set)
    outputs = metrics_tables(output_dir)
    write_table(metrics.to_arrow(), outputs["metrics"], METRICS)
    write_table(comparisons.to_arrow(), outputs["comparisons"], COMPARISONS)
    write_table(ALIGNMENT.empty_table(), outputs["alignment"], ALIGNMENT)
    write_table(flags.to_arrow(), outputs["flags"], IMAGE_FLAGS, metadata=prompt_table_metadata(prompts_path))
    return outputs
