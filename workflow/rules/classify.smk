rule classify:
    # The Q16 record stands for the weights and prompt vectors beside it (checked
    # against the sha256 it lists before loading).
    input:
        images="results/images/{model}/{mitigation}/shard-{shard}/block-{block}.parquet",
        prompts=PROMPT_SHARD,
        q16=Q16_RECORD,
    output:
        scores="results/scores/{model}/{mitigation}/shard-{shard}/block-{block}.parquet",
    log:
        "logs/classify/{model}/{mitigation}/shard-{shard}-block-{block}.log",
    benchmark:
        "benchmarks/classify/{model}/{mitigation}/shard-{shard}-block-{block}.tsv"
    params:
        image_indices=block_image_indices,
    threads: EXECUTION["classify_threads"]
    resources:
        gpu=1,
        mem_mb=EXECUTION["classify_mem_mb"],
    conda:
        "../../envs/classify.yaml"
    script:
        "../../scripts/classify.py"
