"""Rule aggregate: judge profile on raw scores, degenerate-image policy, then IP and EMI per condition and category."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

import polars as pl

from i2peval.generation.snapshots import read_model_record
from i2peval.metrics.aggregate import (
    EmiSettings,
    JudgeProfile,
    ScoreFile,
    check_manifests,
    compute_metrics,
    load_flags,
)
from i2peval.metrics.degenerate import apply_policy, read_degenerate, with_degenerate
from i2peval.plan import image_jobs
from i2peval.schemas import (
    MANIFEST,
    METRICS,
    PROMPTS,
    read_columns,
    read_table,
    write_table,
)
from i2peval.storage import atomic_write

jobs = image_jobs(**snakemake.params.image_layout)
if len(jobs) != len(snakemake.input.scores):
    raise RuntimeError("params.image_layout does not describe input.scores")
manifests = pl.concat(
    pl.from_arrow(read_columns(path, MANIFEST, ["model", "model_commit", "prompt_id", "image_index", "seed"]))
    for path in snakemake.input.manifests
)
check_manifests(
    manifests,
    pl.from_arrow(read_table(snakemake.input.prompts, PROMPTS)),
    {
        model: (Path(path), read_model_record(Path(path)))
        for model, path in zip(snakemake.params.models, snakemake.input.models)
    },
)
score_files = [
    ScoreFile(Path(path), job.model, job.mitigation, job.shard, job.image_indices)
    for job, path in zip(jobs, snakemake.input.scores)
]
profile = JudgeProfile.from_config(snakemake.params.judge_profile)
degenerate = read_degenerate([Path(path) for path in snakemake.input.manifests])
flags = with_degenerate(load_flags(score_files, Path(snakemake.input.prompts), profile), degenerate.lazy()).collect()
atomic_write(snakemake.output.flags, flags.write_parquet)
metrics = compute_metrics(
    apply_policy(flags.lazy(), snakemake.params.degenerate_images["policy"]), EmiSettings(**snakemake.params.emi)
)
write_table(metrics.to_arrow(), snakemake.output.metrics, METRICS)
