rule generate:
    # The model's record stands for its snapshot (the job checks every file of the
    # snapshot beside it against the sha256 the record lists, before loading any). Both
    # inputs are cheap outputs in folders named after their settings, read as ancient:
    # their job made again (a source record deleted, a prompt file moved) makes no image
    # again; aggregation checks every manifest's model commit, seed and prompt text
    # against them instead. (One that is gone while its folder and images exist stops
    # the plan: `Study.check_records`.)
    input:
        prompts=prompt_shard,
        model=generate_model_record,
    output:
        images=plan.IMAGES,
        manifest=plan.MANIFESTS,
    log:
        "logs/{setdir}generate/{model}/{mitigation}/shard-{shard}-block-{block}.log",
    benchmark:
        "benchmarks/{setdir}generate/{model}/{mitigation}/shard-{shard}-block-{block}.tsv"
    conda:
        "../../envs/generate.yaml"
    threads: EXECUTION.generate_threads
    resources:
        gpu=1,
        mem_mb=EXECUTION.generate_mem_mb,
    params:
        generation=model_generation_params,
        mitigation=mitigation_params,
        image_indices=block_image_indices,
    script:
        "../../scripts/generate.py"


onstart:
    # before any job runs (never in a dry run): refuse when the new images would not fit
    if EXECUTION.check_disk_space:
        diskspace.check_free_space(planned_generate_images(), Path("results/images"))
