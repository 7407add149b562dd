"""Rule classify: raw scores of every configured judge for one generate job's images."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.execution import ExecutionSettings
from i2peval.judges.assets import read_asset_record
from i2peval.judges.classify import ScoredJob, run_classify_job
from i2peval.plan import set_of_folder
from i2peval.schemas import PROMPTS, read_table

# How the job runs, not what it computes: not a param, so changing it reruns nothing.
execution = ExecutionSettings(**snakemake.config["execution"])
prompt_ids = read_table(snakemake.input.prompts, PROMPTS)["prompt_id"].to_pylist()
run_classify_job(
    images_path=Path(snakemake.input.images),
    manifest_path=Path(snakemake.input.manifest),
    expected=[(prompt_id, index) for prompt_id in prompt_ids for index in snakemake.params.image_indices],
    job=ScoredJob(set_of_folder(snakemake.wildcards.setdir), snakemake.wildcards.model, snakemake.wildcards.mitigation),
    judges=snakemake.params.judges,
    assets={
        asset: (Path(path), read_asset_record(asset, path))
        for asset, path in zip(snakemake.params.assets, snakemake.input.assets)
    },
    scores_path=Path(snakemake.output.scores),
    device=execution.device,
    batch_size=execution.classify_batch_size,
    lock_dir=Path(execution.gpu_lock_dir),
    threads=snakemake.threads,
    dtype=snakemake.params.judge_dtype,
)
