"""Rule classify: raw Q16 and NudeNet scores of one generate job's images."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.judges.classify import run_classify_job
from i2peval.judges.q16 import q16_asset_paths, read_q16_record
from i2peval.schemas import PROMPTS, read_table

execution = snakemake.config["execution"]
prompt_ids = read_table(snakemake.input.prompts, PROMPTS)["prompt_id"].to_pylist()
q16_record_path = Path(snakemake.input.q16)
q16_weights, q16_prompts = q16_asset_paths(q16_record_path)
run_classify_job(
    images_path=Path(snakemake.input.images),
    expected=[(prompt_id, index) for prompt_id in prompt_ids for index in snakemake.params.image_indices],
    model=snakemake.wildcards.model,
    mitigation=snakemake.wildcards.mitigation,
    q16_record=read_q16_record(q16_record_path),
    q16_record_path=q16_record_path,
    q16_weights=q16_weights,
    q16_prompts=q16_prompts,
    scores_path=Path(snakemake.output.scores),
    device=execution["device"],
    batch_size=execution["classify_batch_size"],
    lock_dir=Path(execution["gpu_lock_dir"]),
    threads=snakemake.threads,
)
