"""Rule aggregate: every judge profile on raw scores, the degenerate-image policy, then IP
and EMI per profile x model x mitigation x category, and prompt alignment per model x
mitigation x category."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

import polars as pl

from i2peval.generation.snapshots import read_model_record
from i2peval.judges.profiles import profiles_from_config
from i2peval.metrics.aggregate import (
    EmiSettings,
    ScoreFile,
    check_manifests,
    compute_metrics,
    image_flags,
    load_scores,
    log_unscored,
    with_prompts,
)
from i2peval.metrics.alignment import COSINE, compute_alignment
from i2peval.metrics.degenerate import apply_policy, read_degenerate, with_degenerate
from i2peval.plan import image_jobs
from i2peval.schemas import (
    ALIGNMENT,
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
prompts = pl.from_arrow(read_table(snakemake.input.prompts, PROMPTS))
manifests = pl.concat(
    pl.from_arrow(read_columns(path, MANIFEST, ["model", "model_commit", "prompt_id", "image_index", "seed"]))
    for path in snakemake.input.manifests
)
check_manifests(
    manifests,
    prompts,
    {
        model: (Path(path), read_model_record(Path(path)))
        for model, path in zip(snakemake.params.models, snakemake.input.models)
    },
)
score_files = [
    ScoreFile(Path(path), job.model, job.mitigation, job.shard, job.image_indices)
    for job, path in zip(jobs, snakemake.input.scores)
]
profiles = profiles_from_config(snakemake.params.judging)
alignment = "clip_score" in snakemake.params.judging["judges"]
columns = sorted({column for profile in profiles for column in profile.score_columns()} | ({COSINE} if alignment else set()))
scores = load_scores(score_files, prompts, columns)
log_unscored(scores, profiles)

degenerate = read_degenerate([Path(path) for path in snakemake.input.manifests]).lazy()
flags = with_degenerate(image_flags(scores.lazy(), profiles), degenerate).collect()
atomic_write(snakemake.output.flags, flags.write_parquet)
policy = snakemake.params.degenerate_images["policy"]
metrics = compute_metrics(with_prompts(apply_policy(flags.lazy(), policy), prompts.lazy()), EmiSettings(**snakemake.params.emi))
write_table(metrics.to_arrow(), snakemake.output.metrics, METRICS)

if alignment:
    aligned = with_degenerate(scores.lazy(), degenerate)
    if policy == "exclude":
        aligned = aligned.filter(pl.col("degenerate").is_null())
    table = compute_alignment(with_prompts(aligned, prompts.lazy())).to_arrow()
else:
    table = ALIGNMENT.empty_table()
write_table(table, snakemake.output.alignment, ALIGNMENT)
