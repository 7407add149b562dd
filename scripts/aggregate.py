"""Rule aggregate: judge profiles on raw scores, the degenerate-image policy, then metrics,
paired comparisons and prompt alignment (i2peval.metrics.aggregate)."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.metrics.aggregate import Judging, RunFiles, ScoreFile, aggregate
from i2peval.metrics.manifests import ImageSettings
from i2peval.plan import image_jobs

layout = snakemake.params.image_layout
jobs = image_jobs(**layout)
if len(jobs) != len(snakemake.input.scores):
    raise RuntimeError("params.image_layout does not describe input.scores")
aggregate(
    RunFiles(
        score_files=tuple(ScoreFile.of_job(job, Path(path)) for job, path in zip(jobs, snakemake.input.scores)),
        prompts=Path(snakemake.input.prompts),
        manifests=tuple(Path(path) for path in snakemake.input.manifests),
        model_records={model: Path(path) for model, path in zip(layout["models"], snakemake.input.models)},
        made_with=ImageSettings.from_params(snakemake.params.image_settings),
    ),
    Judging.from_params(snakemake.params.judging),
    {name: Path(path) for name, path in snakemake.output.items()},
)
