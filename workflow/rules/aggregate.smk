rule aggregate:
    input:
        scores=remade_when_stale(TABLES["metrics"], lambda study: [job.path(plan.SCORES) for job in study.image_jobs()]),
        prompts=set_prompt_table,
        manifests=set_job_paths(plan.MANIFESTS),
        models=set_model_records,
    output:
        metrics=report(TABLES["metrics"], caption="../report/metrics.rst", category="Tables"),
        flags=report(TABLES["flags"], caption="../report/image_flags.rst", category="Tables"),
        alignment=report(TABLES["alignment"], caption="../report/alignment.rst", category="Tables"),
        comparisons=report(TABLES["comparisons"], caption="../report/comparisons.rst", category="Tables"),
    log:
        "logs/{setdir}aggregate.log",
    benchmark:
        "benchmarks/{setdir}aggregate.tsv"
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=8000,
    params:
        image_layout=set_params(Study.image_layout),
        image_settings=set_params(lambda study: study.image_settings().params()),
        judging=set_params(Study.aggregation_params),
    script:
        "../../scripts/aggregate.py"
