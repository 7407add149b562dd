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

