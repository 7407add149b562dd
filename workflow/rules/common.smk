# Configuration checks and every input/params function the rules use. Everything that can
# be checked before a job runs is checked here, when the workflow is planned.

import os
import sys
from pathlib import Path

from snakemake.utils import validate

# This checkout's package, also where Snakemake runs without it installed. Rule scripts
# find it through the link scripts/i2peval (Snakemake puts scripts/ on their sys.path),
# so the conda environments of envs/ pin only third-party packages.
sys.path.insert(0, f"{workflow.basedir}/src")

from i2peval import diskspace, plan
from i2peval.config import CONFIG_SCHEMA
from i2peval.report import REPORT_TEMPLATE
from i2peval.generation.mitigations import baseline_mitigation, resolve_mitigations
from i2peval.models.snapshots import read_model_record
from i2peval.prompts import source as prompt_source
from i2peval.prompts.i2p import check_shard_count
from i2peval.judges import assets as judge_assets
from i2peval.metrics.profiles import profiles_from_config


validate(config, schema=str(CONFIG_SCHEMA), set_default=True)

MODELS = sorted(config["models"])
MITIGATIONS = sorted(config["mitigations"])
SHARDS = list(range(config["prompts"]["shards"]))
EXECUTION = config["execution"]
MITIGATION_OBJECTS = resolve_mitigations(config)
MITIGATION_SETTINGS = {name: mitigation.settings() for name, mitigation in MITIGATION_OBJECTS.items()}
BASELINE = baseline_mitigation(MITIGATION_OBJECTS)
IMAGE_LAYOUT = plan.image_layout(config)
IMAGE_JOBS = plan.image_jobs(**IMAGE_LAYOUT)

# Cheap upstream outputs, in folders named after the settings that decide them
# (plan.settings_folder): a failed or repeated job there never costs the images.
PROMPT_COUNT = prompt_source.known_prompt_count(config["prompts"])
if PROMPT_COUNT is not None:
    check_shard_count(len(SHARDS), PROMPT_COUNT)
PROMPTS_DIR = prompt_source.prompts_folder(config["prompts"])
PROMPT_TABLE = prompt_source.prompt_table(config)
PROMPT_SHARD = f"{PROMPTS_DIR}/shard-{{shard}}.parquet"
MODEL_DIRS = {name: plan.snapshot_folder(name, spec) for name, spec in config["models"].items()}
MODEL_RECORDS = plan.model_records(config)

# Judges: which run (each judge's raw scores are kept), the assets they load, and the
# profiles that turn scores into verdicts (checked here: a profile may read only judges
# that run).
JUDGING = judge_assets.judging(config)
JUDGES = JUDGING["judges"]
JUDGE_ASSETS = judge_assets.assets_of(JUDGES)
ASSET_DIRS = {asset: judge_assets.asset_folder(asset, config) for asset in judge_assets.ASSETS}
ASSET_RECORDS = {asset: str(judge_assets.record_path(asset, folder)) for asset, folder in ASSET_DIRS.items()}
profiles_from_config(JUDGING)

# Records of earlier runs that jobs will read: a damaged one stops planning, before any
# job (and so before Snakemake deletes any output) runs. So does a sha256 pinned in the
# configuration that the recorded files do not have.
for record_path in MODEL_RECORDS.values():
    if os.path.exists(record_path):
        read_model_record(record_path)
for asset in JUDGE_ASSETS:
    if os.path.exists(ASSET_RECORDS[asset]):
        judge_assets.pin_problems(
            asset, config, judge_assets.read_asset_record(asset, ASSET_RECORDS[asset]), ASSET_RECORDS[asset]
        )


wildcard_constraints:
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
    mitigation="[A-Za-z0-9][A-Za-z0-9_.-]*",
    shard=r"\d+",
    block=r"\d+",
    snapshot="[A-Za-z0-9][A-Za-z0-9_.-]*",


def final_outputs():
    return ["results/report.html", "results/metrics/metrics.parquet"]


def job_paths(pattern):
    """`pattern` filled in for every image job, in `plan.image_jobs` order."""
    return [job.path(pattern) for job in IMAGE_JOBS]


def prompt_csv_input(wildcards):
    return [config["prompts"]["csv"]] if config["prompts"]["source"] == "csv" else []


def prompt_source_params(wildcards):
    source = config["prompts"]["source"]
    return {"source": source, **({"hub": config["prompts"]["hub"]} if source == "hub" else {})}


def model_snapshot_params(wildcards):
    folder = f"resources/models/{wildcards.model}/{wildcards.snapshot}"
    if MODEL_DIRS.get(wildcards.model) != folder:
        raise ValueError(f"{folder} is not the snapshot folder of the configured model {wildcards.model!r}")
    return plan.snapshot_spec(config["models"][wildcards.model])


def model_record_input(wildcards):
    return MODEL_RECORDS[wildcards.model]


def model_generation_params(wildcards):
    return plan.generation_spec(config["models"][wildcards.model], config["generation"])


def mitigation_params(wildcards):
    return MITIGATION_SETTINGS[wildcards.mitigation]


def block_image_indices(wildcards):
    return plan.block_image_indices(
        int(wildcards.block),
        config["generation"]["images_per_prompt"],
        config["generation"]["images_per_job"],
    )


def asset_spec_params(asset):
    """Params function: the settings that decide `asset`'s files."""
    spec = judge_assets.asset_spec(asset, config)

    def params(wildcards):
        return spec

    return params


def judge_asset_records(wildcards):
    """The records of the assets the configured judges load, in JUDGE_ASSETS order."""
    return [ASSET_RECORDS[asset] for asset in JUDGE_ASSETS]


REPORT_IMAGES = plan.REPORT_IMAGES


def report_image_inputs(wildcards):
    return expand(REPORT_IMAGES, model=MODELS, mitigation=MITIGATIONS, shard=SHARDS)


def report_image_pattern(wildcards):
    """REPORT_IMAGES unexpanded (a plain string in params: would be expanded by Snakemake)."""
    return REPORT_IMAGES


def planned_generate_images():
    """The images of every generate job this run will execute, for the disk-space check."""
    return [
        diskspace.PlannedImages(
            images=len(job.params.image_indices)
            * diskspace.prompts_in_shard(Path(job.input.prompts), len(SHARDS), PROMPT_COUNT),
            resolution=job.params.generation["resolution"],
        )
        # the DAG of this run: Snakemake lists its planned jobs nowhere else
        for job in workflow.dag.needrun_jobs()
        if job.rule.name == "generate"
    ]

