# The study, read once from the configuration, and every input/params function the rules
# use. Everything that can be checked before a job runs is checked here, when the workflow
# is planned.

import sys
from pathlib import Path

# This checkout's package, also where Snakemake runs without it installed.
sys.path.insert(0, f"{workflow.basedir}/src")

from snakemake.logging import logger

from i2peval import diskspace, plan
from i2peval.config import check_config_files, validate_config
from i2peval.execution import ExecutionSettings
from i2peval.metrics import fid
from i2peval.report import REPORT_TEMPLATE
from i2peval.study import Study

# Snakemake read the configuration files keeping the last of two equal keys: read them
# again strictly. Validated in place: the rule scripts read the execution settings from it.
check_config_files(workflow.configfiles)
validate_config(config, ", ".join(map(str, workflow.configfiles)) or "the configuration")
# One study per prompt set, by the folder of its results ({setdir}: "" for the set named
# i2p, sets/<name>/ for the others); models, mitigations and judges are the same in all.
STUDIES = {study.setdir: study for study in Study.of_every_set(config).values()}
STUDY = next(iter(STUDIES.values()))
# Every configured model a set runs, by name (a set may run a subset).
MODELS = {name: model for study in STUDIES.values() for name, model in study.models.items()}

EXECUTION = ExecutionSettings(**config["execution"])
ASSETS = STUDY.assets
TABLES = {name: str(path) for name, path in plan.metrics_tables(plan.METRICS_DIR).items()}

# Records of earlier runs that jobs will read: a damaged one stops planning, before any
# job (and so before Snakemake deletes any output) runs. So does a sha256 pinned in the
# configuration that the recorded files do not have.
for study in STUDIES.values():
    study.check_records()
# Only the main process plans: a job Snakemake runs in a process of its own (a cluster
# job) re-reads this file while other jobs are making their outputs, on another machine.
if workflow.is_main_process:
    for study in STUDIES.values():
        study.check_gone_inputs()
        study.check_memory()


wildcard_constraints:
    setdir=r"(sets/[a-z0-9][a-z0-9-]*/)?",
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
    mitigation="[A-Za-z0-9][A-Za-z0-9_.-]*",
    shard=r"\d+",
    block=r"\d+",
    snapshot="[A-Za-z0-9][A-Za-z0-9_.-]*",
    reference="[0-9a-f]+",


def final_outputs():
    """Every prompt set's report and metrics (and FID table, where it has a reference)."""
    return [
        path for study in STUDIES.values() for path in (study.report_path, study.metrics_table, *fid_table_of(study))
    ]


def fid_table_of(study):
    return [study.fid_table] if study.fid_reference is not None else []


def set_fid_table(wildcards):
    """The FID table of the job's prompt set, where it has a reference folder."""
    return fid_table_of(STUDIES[wildcards.setdir])


# The FID reference folders of the sets that name one, by the id in their statistics' file
# name. The main process lists them when it plans, so a missing folder stops planning; a job
# process lists only the folder of its own job (a compute node need not see the others).
FID_REFERENCES = {
    study.fid_reference_id: study.fid_reference for study in STUDIES.values() if study.fid_reference is not None
}
FID_LISTINGS = {}
if workflow.is_main_process:
    FID_LISTINGS = {reference: fid.listing_digest(folder) for reference, folder in FID_REFERENCES.items()}


def fid_reference_folder(wildcards):
    return str(FID_REFERENCES[wildcards.reference])


def fid_reference_listing(wildcards):
    """What changes when an image of the folder does (`fid.listing_digest`)."""
    if wildcards.reference not in FID_LISTINGS:
        FID_LISTINGS[wildcards.reference] = fid.listing_digest(FID_REFERENCES[wildcards.reference])
    return FID_LISTINGS[wildcards.reference]


def fid_condition_images(wildcards):
    """The image containers of one condition of the job's prompt set."""
    condition = (wildcards.model, wildcards.mitigation)
    jobs = STUDIES[wildcards.setdir].image_jobs()
    return [job.path(plan.IMAGES) for job in jobs if (job.model, job.mitigation) == condition]


def prompt_rules():
    """The prompt sets whose prompt stage has a rule of its own, by the folder of their
    prompts (sets with the same source settings share one): the rule of the set named i2p
    is called prompts, as in a study with one set."""
    rules = {}
    for study in STUDIES.values():
        rules.setdefault(study.prompts.folder, study)
    return list(rules.values())


def prompt_shard(wildcards):
    """The prompt shard of a job, read as ancient (see the generate rule)."""
    return ancient(STUDIES[wildcards.setdir].prompts.shard_path(int(wildcards.shard)))


def set_prompt_table(wildcards):
    return STUDIES[wildcards.setdir].prompts.table_path


def set_prompt_record(wildcards):
    return STUDIES[wildcards.setdir].prompts.record_path


def set_job_paths(pattern):
    """An input function: `pattern` filled in for every image job of the job's prompt set,
    in `Study.image_jobs` order."""

    def input_function(wildcards):
        return [job.path(pattern) for job in STUDIES[wildcards.setdir].image_jobs()]

    return input_function


def set_model_records(wildcards):
    """The records of the models of the job's prompt set, in its study's order."""
    return [model.record_path for model in STUDIES[wildcards.setdir].models.values()]


def model_snapshot_params(wildcards):
    model = MODELS[wildcards.model]
    folder = f"resources/models/{wildcards.model}/{wildcards.snapshot}"
    if model.folder != folder:
        raise ValueError(f"{folder} is not the snapshot folder of the configured model {wildcards.model!r}")
    return model.snapshot_spec()


def generate_model_record(wildcards):
    """The generate job's model record; first forces the job to run when its finished
    images were made otherwise than the study and this version of the engine make them
    (`Study.images_made_otherwise`: a rule of the engine is in no params). Only the main
    process plans: a job run in a process of its own re-reads this file."""
    if workflow.is_main_process:
        job = plan.ImageJob(
            wildcards.model,
            wildcards.mitigation,
            int(wildcards.shard),
            int(wildcards.block),
            (),
            wildcards.setdir,
        )
        differences = STUDIES[wildcards.setdir].images_made_otherwise(job)
        manifest = job.path(plan.MANIFESTS)
        if differences and manifest not in workflow.dag.forcefiles:
            logger.warning(f"{manifest}: {'; '.join(differences)}: making its images again")
            workflow.dag.forcefiles.add(manifest)
    return ancient(MODELS[wildcards.model].record_path)


def model_generation_params(wildcards):
    return STUDIES[wildcards.setdir].generation_params(wildcards.model)


def mitigation_params(wildcards):
    return STUDIES[wildcards.setdir].mitigations[wildcards.mitigation].settings()


def block_image_indices(wildcards):
    generation = STUDIES[wildcards.setdir].generation
    return plan.block_image_indices(int(wildcards.block), generation.images_per_prompt, generation.images_per_job)


def judge_asset_records(wildcards):
    """The records of the assets the configured judges load, in registry order."""
    return [asset.record_path for asset in STUDY.judge_assets]


def remade_when_stale(result, paths):
    """An input function of the job writing the prompt set's `result` (a pattern with
    {setdir}) that returns what `paths(study)` gives for the set's study, and first forces
    the job to run when `result` was computed from files that are gone
    (`Study.stale_result`): Snakemake remakes a missing file only for a job that runs
    anyway. Forced through the DAG being built, so only for a run that includes the job.
    Only the main process plans: a job run in a process of its own re-reads this file."""

    def input_function(wildcards):
        study, path = STUDIES[wildcards.setdir], result.format(setdir=wildcards.setdir)
        stale = study.stale_result(path) if workflow.is_main_process else None
        if stale and path not in workflow.dag.forcefiles:
            logger.warning(f"{stale.describe()}: making them and {path} again")
            workflow.dag.forcefiles.add(path)
        return paths(study)

    return input_function


def report_image_inputs(wildcards):
    return STUDIES[wildcards.setdir].report_images()


def set_params(method):
    """A params function: `method` of the job's prompt set's study."""
    return lambda wildcards: method(STUDIES[wildcards.setdir])


def planned_generate_images():
    """The images of every generate job this run will execute, for the disk-space check."""
    return [
        diskspace.PlannedImages(
            images=len(job.params.image_indices)
            * diskspace.prompts_in_shard(
                Path(job.input.prompts),
                STUDIES[job.wildcards.setdir].prompts.shards,
                STUDIES[job.wildcards.setdir].prompt_count,
            ),
            resolution=job.params.generation["resolution"],
        )
        # the DAG of this run: Snakemake lists its planned jobs nowhere else
        for job in workflow.dag.needrun_jobs()
        if job.rule.name == "generate"
    ]
