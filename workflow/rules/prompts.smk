rule prompts:
    input:
        csv=prompt_csv_input,
    output:
        table=PROMPT_TABLE,
        shards=expand(PROMPT_SHARD, shard=SHARDS),
        source=f"{PROMPTS_DIR}/source.json",
    log:
        "logs/prompts.log",
    benchmark:
        "benchmarks/prompts.tsv"
    params:
        source=prompt_source_params,
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/prompts.py"
