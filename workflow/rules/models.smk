rule model:
    output:
        snapshot=directory("resources/models/{model}/{snapshot}/snapshot"),
        record="resources/models/{model}/{snapshot}/model.json",
    log:
        "logs/model/{model}/{snapshot}.log",
    benchmark:
        "benchmarks/model/{model}/{snapshot}.tsv"
    params:
        spec=model_snapshot_params,
    localrule: True
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/generate.yaml"
    script:
        "../../scripts/model.py"


rule q16_assets:
    output:
        weights=f"{Q16_DIR}/clip.safetensors",
        prompts=f"{Q16_DIR}/prompts.npy",
        record=Q16_RECORD,
    log:
        "logs/q16_assets.log",
    benchmark:
        "benchmarks/q16_assets.tsv"
    params:
        spec=q16_source_params,
    localrule: True
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/classify.yaml"
    script:
        "../../scripts/q16_assets.py"
