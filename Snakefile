# I2P inappropriateness study (Brack et al. 2023): prompts -> images -> scores -> metrics -> report.
# Configuration: config.yaml (full study) or demo/config.yaml (offline demo, `make demo`).

from snakemake.utils import min_version

min_version("9.0")


# `--configfile my.yaml` replaces config.yaml instead of being merged into it.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/prompts.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/judges.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/classify.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/fid.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
