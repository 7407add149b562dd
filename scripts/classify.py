"""Rule classify: raw Q16 and NudeNet scores of one generate job's images."""

import json
from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.judges.classify import run_classify_job

execution = snakemake.config["execution"]
q16 = json.loads(Path(snakemake.input.q16).read_text())
run_classify_job(
    images_path=Path(snakemake.input.images),
    model=snakemake.wildcards.model,
    mitigation=snakemake.wildcards.mitigation,
    q16_architecture=q16["architecture"],
    q16_weights=Path(snakemake.input.weights),
    q16_prompts=Path(snakemake.input.prompts),
    scores_path=Path(snakemake.output.scores),
    device=execution["device"],
    batch_size=execution["classify_batch_size"],
    lock_dir=Path(execution["gpu_lock_dir"]),
    threads=snakemake.threads,
)
