rule aggregate:
    input:
        scores=job_paths("results/scores/{model}/{mitigation}/shard-{shard}/block-{block}.parquet"),
        prompts=PROMPT_TABLE,
        manifests=job_paths(
            "results/manifests/{model}/{mitigation}/shard-{shard}/block-{block}.parquet"
        ),
        models=[MODEL_RECORDS[model] for model in MODELS],
    output:
        metrics="results/metrics/metrics.parquet",
        flags="results/metrics/image_flags.parquet",
        alignment="results/metrics/alignment.parquet",
        comparisons="results/metrics/comparisons.parquet",
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
