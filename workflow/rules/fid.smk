# FID of each condition's images against a folder of reference images, for the prompt sets
# that name one (fid_reference): Inception features per condition, then one table per set.


rule fid_inception_assets:
    output:
        files=ASSETS["fid_inception"].file_paths(),
        record=ASSETS["fid_inception"].record_path,
    log:
        "logs/fid_inception_assets.log",
    benchmark:
        "benchmarks/fid_inception_assets.tsv"
    localrule: True
    conda:
        "../../envs/classify.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        settings=ASSETS["fid_inception"].settings,
    script:
        "../../scripts/judge_assets.py"


rule fid_reference:
    input:
        inception=ASSETS["fid_inception"].record_path,
    output:
        statistics=plan.FID_REFERENCE_STATISTICS,
    log:
        "logs/fid_reference-{reference}.log",
    benchmark:
        "benchmarks/fid_reference-{reference}.tsv"
    conda:
        "../../envs/classify.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        gpu=1,
    params:
        folder=fid_reference_folder,
        # a changed, added or removed image computes the statistics again
        listing=fid_reference_listing,
    script:
        "../../scripts/fid_statistics.py"


rule fid_statistics:
    input:
        images=fid_condition_images,
        inception=ASSETS["fid_inception"].record_path,
    output:
        statistics=plan.FID_STATISTICS,
    log:
        "logs/{setdir}fid/{model}/{mitigation}.log",
    benchmark:
        "benchmarks/{setdir}fid/{model}/{mitigation}.tsv"
    conda:
        "../../envs/classify.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        gpu=1,
    script:
        "../../scripts/fid_statistics.py"


rule fid:
    input:
        conditions=set_params(lambda study: list(study.fid_statistics().values())),
        reference=set_params(lambda study: study.fid_reference_statistics),
    output:
        table=report(f"{plan.METRICS_DIR}/{plan.FID_TABLE}", caption="../report/fid.rst", category="Tables"),
    log:
        "logs/{setdir}fid.log",
    benchmark:
        "benchmarks/{setdir}fid.tsv"
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        prompt_set=set_params(lambda study: study.prompt_set),
        conditions=set_params(lambda study: [list(condition) for condition in study.fid_statistics()]),
    script:
        "../../scripts/fid.py"
