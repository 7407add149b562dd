rule classify:
    # The judges' records stand for their weights (checked against the sha256 they list
    # before loading); the manifest gives the prompt text each image was made from.
    input:
        images=plan.IMAGES,
        manifest=plan.MANIFESTS,
        prompts=prompt_shard,
        assets=judge_asset_records,
    output:
        scores=plan.SCORES,
    log:
        "logs/{setdir}classify/{model}/{mitigation}/shard-{shard}-block-{block}.log",
    benchmark:
        "benchmarks/{setdir}classify/{model}/{mitigation}/shard-{shard}-block-{block}.tsv"
    conda:
        "../../envs/classify.yaml"
    threads: EXECUTION.classify_threads
    resources:
        gpu=1,
        mem_mb=EXECUTION.classify_mem_mb,
    params:
        image_indices=block_image_indices,
        judges=list(STUDY.judges),
        judge_dtype=STUDY.classify_dtype,
        assets=[asset.name for asset in STUDY.judge_assets],
    script:
        "../../scripts/classify.py"
