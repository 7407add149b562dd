rule model:
    output:
        snapshot=directory("resources/models/{model}/{snapshot}/snapshot"),
        record="resources/models/{model}/{snapshot}/model.json",
    log:
        "logs/model/{model}/{snapshot}.log",
    benchmark:
        "benchmarks/model/{model}/{snapshot}.tsv"
    localrule: True
    conda:
        "../../envs/generate.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        spec=model_snapshot_params,
    script:
        "../../scripts/model.py"
