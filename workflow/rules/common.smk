# Configuration checks and every input/params function the rules use. Everything that can
# be checked before a job runs is checked here, when the workflow is planned.

import os
import sys

from snakemake.utils import validate

# This checkout's package, also where Snakemake runs without it installed. Rule scripts
# find it through the link scripts/i2peval (Snakemake puts scripts/ on their sys.path),
# so the conda environments of envs/ pin only third-party packages.
sys.path.insert(0, f"{workflow.basedir}/src")

from i2peval import plan
from i2peval.generation.mitigations import baseline_mitigation, resolve_mitigation
from i2peval.generation.models import read_model_record
from i2peval.judges.q16 import read_q16_record
from i2peval.prompts.i2p import check_shard_count


validate(config, schema="../schemas/config.schema.yaml", set_default=True)

MODELS = sorted(config["models"])
MITIGATIONS = sorted(config["mitigations"])
SHARDS = list(range(config["prompts"]["shards"]))
EXECUTION = config["execution"]
MITIGATION_OBJECTS = {
    name: resolve_mitigation(name, spec, config["concept"])
    for name, spec in config["mitigations"].items()
}
MITIGATION_SETTINGS = {name: mitigation.settings() for name, mitigation in MITIGATION_OBJECTS.items()}
BASELINE = baseline_mitigation(MITIGATION_OBJECTS)
IMAGE_LAYOUT = {
    "models": MODELS,
    "mitigations": MITIGATIONS,
    "shards": len(SHARDS),
    "images_per_prompt": config["generation"]["images_per_prompt"],
    "images_per_job": config["generation"]["images_per_job"],
}
IMAGE_JOBS = plan.image_jobs(**IMAGE_LAYOUT)
REPORT_TEMPLATE = f"{workflow.basedir}/reports/report.html.j2"
MODEL_RECORD = "resources/models/{model}/model.json"
Q16_RECORD = "resources/q16/q16.json"

PROMPT_COUNT = plan.known_prompt_count(config["prompts"])
if PROMPT_COUNT is not None:
    check_shard_count(len(SHARDS), PROMPT_COUNT)

# Records of earlier runs that jobs will read: a damaged one stops planning, before any
# job (and so before Snakemake deletes any output) runs.
for model in MODELS:
    if os.path.exists(MODEL_RECORD.format(model=model)):
        read_model_record(MODEL_RECORD.format(model=model))
if os.path.exists(Q16_RECORD):
    read_q16_record(Q16_RECORD)


wildcard_constraints:
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
    mitigation="[A-Za-z0-9][A-Za-z0-9_.-]*",
    shard=r"\d+",
    block=r"\d+",


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
    return plan.snapshot_spec(config["models"][wildcards.model])


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


def q16_source_params(wildcards):
    q16 = config["q16"]
    if q16["source"] == "demo":
        return {"source": "demo", "seed": q16["demo_seed"]}
    return {"source": "hub", "clip": q16["clip"], "prompts": q16["prompts"]}


# The first job's images of every model x mitigation: the report's thumbnails.
REPORT_IMAGES = "results/images/{model}/{mitigation}/shard-0/block-0.parquet"


def report_image_inputs(wildcards):
    return expand(REPORT_IMAGES, model=MODELS, mitigation=MITIGATIONS)


def report_image_pattern(wildcards):
    """REPORT_IMAGES unexpanded (a plain string in params: would be expanded by Snakemake)."""
    return REPORT_IMAGES
