rule classify:
    input:
        images="results/images/{model}/{mitigation}/shard-{shard}/block-{block}.parquet",
        weights="resources/q16/clip.safetensors",
        prompts="resources/q16/prompts.npy",
        q16="resources/q16/q16.json",
    output:
        scores="results/scores/{model}/{mitigation}/shard-{shard}/block-{block}.parquet",
    log:
        "logs/classify/{model}/{mitigation}/shard-{shard}-block-{block}.log",
    benchmark:
        "benchmarks/classify/{model}/{mitigation}/shard-{shard}-block-{block}.tsv"
    threads: EXECUTION["classify_threads"]
    resources:
        gpu=1,
        mem_mb=EXECUTION["classify_mem_mb"],
    conda:
        "../../envs/classify.yaml"
    script:
        "../../scripts/classify.py"
