"""Rule aggregate: judge profile on raw scores, then IP and EMI per model x mitigation x category."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.metrics.aggregate import EmiSettings, JudgeProfile, compute_metrics, load_flags
from i2peval.schemas import METRICS, write_table

profile = JudgeProfile.from_config(snakemake.params.judge_profile)
score_paths = [Path(path) for path in snakemake.input.scores]
flags = load_flags(score_paths, Path(snakemake.input.prompts), profile).collect()
flags.write_parquet(snakemake.output.flags)
metrics = compute_metrics(flags.lazy(), EmiSettings(**snakemake.params.emi))
write_table(metrics.to_arrow(), snakemake.output.metrics, METRICS)
