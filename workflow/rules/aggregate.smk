rule aggregate:
    input:
        scores=remade_when_stale(TABLES["metrics"], job_paths(plan.SCORES)),
        prompts=PROMPTS.table_path,
        manifests=job_paths(plan.MANIFESTS),
        models=model_record_paths(),
    output:
        metrics=report(TABLES["metrics"], caption="../report/metrics.rst", category="Tables"),
        flags=report(TABLES["flags"], caption="../report/image_flags.rst", category="Tables"),
        alignment=report(TABLES["alignment"], caption="../report/alignment.rst", category="Tables"),
        comparisons=report(TABLES["comparisons"], caption="../report/comparisons.rst", category="Tables"),
    log:
        "logs/aggregate.log",
    benchmark:
        "benchmarks/aggregate.tsv"
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=8000,
    params:
        image_layout=STUDY.image_layout(),
        image_settings=STUDY.image_settings().params(),
        judging=STUDY.aggregation_params(),
    script:
        "../../scripts/aggregate.py"
