"""Rule aggregate: judge profiles on raw scores, the degenerate-image policy, then metrics,
paired comparisons and prompt alignment (i2peval.metrics.aggregate)."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.metrics.profiles import profiles_from_config
from i2peval.metrics.aggregate import ScoreFile, StudySettings, aggregate
from i2peval.metrics.rates import BootstrapSettings, EmiSettings
from i2peval.plan import image_jobs

jobs = image_jobs(**snakemake.params.image_layout)
if len(jobs) != len(snakemake.input.scores):
    raise RuntimeError("params.image_layout does not describe input.scores")
aggregate(
    score_files=[
        ScoreFile(Path(path), job.model, job.mitigation, job.shard, job.image_indices)
        for job, path in zip(jobs, snakemake.input.scores)
    ],
    prompts_path=Path(snakemake.input.prompts),
    manifest_paths=[Path(path) for path in snakemake.input.manifests],
    model_record_paths={model: Path(path) for model, path in zip(snakemake.params.models, snakemake.input.models)},
    profiles=profiles_from_config(snakemake.params.judging),
    alignment="clip_score" in snakemake.params.judging["judges"],
    settings=StudySettings(
        emi=EmiSettings(**snakemake.params.emi),
        bootstrap=BootstrapSettings(**snakemake.params.bootstrap),
        degenerate_policy=snakemake.params.degenerate_images["policy"],
        baseline=snakemake.params.baseline,
    ),
    outputs={name: Path(path) for name, path in snakemake.output.items()},
)
