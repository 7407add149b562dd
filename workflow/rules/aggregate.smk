rule aggregate:
    input:
        scores=job_paths(plan.SCORES),
        prompts=PROMPT_TABLE,
        manifests=job_paths(plan.MANIFESTS),
        models=[MODEL_RECORDS[model] for model in MODELS],
    output:
        metrics=report("results/metrics/metrics.parquet", caption="../report/metrics.rst", category="Tables"),
        flags=report("results/metrics/image_flags.parquet", caption="../report/image_flags.rst", category="Tables"),
        alignment=report("results/metrics/alignment.parquet", caption="../report/alignment.rst", category="Tables"),
        comparisons=report("results/metrics/comparisons.parquet", caption="../report/comparisons.rst", category="Tables"),
    log:
        "logs/aggregate.log",
    benchmark:
        "benchmarks/aggregate.tsv"
    params:
        image_layout=IMAGE_LAYOUT,
        models=MODELS,
        judging=JUDGING,
        emi=config["emi"],
        bootstrap=config["bootstrap"],
        degenerate_images=config["degenerate_images"],
        baseline=BASELINE,
    localrule: True
    threads: 1
    resources:
        mem_mb=8000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/aggregate.py"
