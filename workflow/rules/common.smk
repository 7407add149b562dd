# Configuration checks and every input/params function the rules use.

import sys

from snakemake.utils import validate

# This checkout's package, also where Snakemake runs without it installed. Rule scripts
# find it through the link scripts/i2peval (Snakemake puts scripts/ on their sys.path),
# so the conda environments of envs/ pin only third-party packages.
sys.path.insert(0, f"{workflow.basedir}/src")

from i2peval import plan
from i2peval.generation.mitigations import resolve_mitigation


validate(config, schema="../schemas/config.schema.yaml", set_default=True)

MODELS = sorted(config["models"])
MITIGATIONS = sorted(config["mitigations"])
SHARDS = list(range(config["prompts"]["shards"]))
BLOCKS = plan.image_blocks(
    config["generation"]["images_per_prompt"], config["generation"]["images_per_job"]
)
EXECUTION = config["execution"]
MITIGATION_SETTINGS = {
    name: resolve_mitigation(name, spec, config["concept"]).settings()
    for name, spec in config["mitigations"].items()
}
REPORT_TEMPLATE = f"{workflow.basedir}/reports/report.html.j2"


wildcard_constraints:
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
    mitigation="[A-Za-z0-9][A-Za-z0-9_.-]*",
    shard=r"\d+",
    block=r"\d+",


def final_outputs():
    return ["results/report.html", "results/metrics/metrics.parquet"]


def job_paths(pattern):
    """`pattern` expanded over every model x mitigation x shard x block."""
    return expand(pattern, model=MODELS, mitigation=MITIGATIONS, shard=SHARDS, block=BLOCKS)


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
