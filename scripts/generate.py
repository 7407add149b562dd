"""Rule generate: the images of one model x mitigation x prompt shard x image block."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.execution import ExecutionSettings
from i2peval.generation.generate import GenerationSettings, run_generate_job
from i2peval.generation.mitigations import Mitigation
from i2peval.models.snapshots import snapshot_of
from i2peval.plan import set_of_folder

mitigation_settings = snakemake.params.mitigation
# How the job runs, not what it computes: not a param, so changing it reruns nothing.
execution = ExecutionSettings(**snakemake.config["execution"])
run_generate_job(
    prompt_set=set_of_folder(snakemake.wildcards.setdir),
    prompts_path=Path(snakemake.input.prompts),
    snapshot_dir=snapshot_of(Path(snakemake.input.model)),
    model_record_path=Path(snakemake.input.model),
    model_name=snakemake.wildcards.model,
    mitigation=Mitigation(name=snakemake.wildcards.mitigation, **mitigation_settings),
    settings=GenerationSettings(**snakemake.params.generation),
    image_indices=snakemake.params.image_indices,
    images_path=Path(snakemake.output.images),
    manifest_path=Path(snakemake.output.manifest),
    device=execution.device,
    batch_size=execution.generate_batch_size,
    lock_dir=Path(execution.gpu_lock_dir),
    threads=snakemake.threads,
    speed=execution.speed,
)
