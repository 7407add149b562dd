rule prompts:
    input:
        csv=prompt_csv_input,
    output:
        table=PROMPTS.table_path,
        shards=expand(PROMPTS.shard_pattern, shard=SHARDS),
        source=PROMPTS.record_path,
    log:
        "logs/prompts.log",
    benchmark:
        "benchmarks/prompts.tsv"
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        source=PROMPTS.params(),
    script:
        "../../scripts/prompts.py"
