rule classify:
    input:
        images="results/images/{model}/{mitigation}/shard-{shard}/block-{block}.parquet",
        prompts="results/prompts/shard-{shard}.parquet",
        # the record (small, checksummed by Snakemake) stands for the weights' content
        weights=ancient("resources/q16/clip.safetensors"),
        q16_prompts="resources/q16/prompts.npy",
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
