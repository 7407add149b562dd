# Each judge's weights, in folders named after the settings that decide them, with a record
# listing their sha256 (checked by every classify job before loading). NudeNet 3's detector
# ships inside the nudenet package: its record pins the installed file.


rule q16_assets:
    output:
        weights=f"{ASSET_DIRS['q16']}/clip.safetensors",
        prompts=f"{ASSET_DIRS['q16']}/prompts.npy",
        record=ASSET_RECORDS["q16"],
    log:
        "logs/q16_assets.log",
    benchmark:
        "benchmarks/q16_assets.tsv"
    params:
        spec=asset_spec_params("q16"),
    localrule: True
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/classify.yaml"
    script:
        "../../scripts/q16_assets.py"


rule nudenet2_assets:
    output:
        detector=f"{ASSET_DIRS['nudenet2']}/detector.onnx",
        classes=f"{ASSET_DIRS['nudenet2']}/classes.txt",
        record=ASSET_RECORDS["nudenet2"],
    log:
        "logs/nudenet2_assets.log",
    benchmark:
        "benchmarks/nudenet2_assets.tsv"
    params:
        spec=asset_spec_params("nudenet2"),
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/classify.yaml"
    script:
        "../../scripts/nudenet2_assets.py"


rule nudenet3_assets:
    output:
        record=ASSET_RECORDS["nudenet3"],
    log:
        "logs/nudenet3_assets.log",
    benchmark:
        "benchmarks/nudenet3_assets.tsv"
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../../envs/classify.yaml"
    script:
        "../../scripts/nudenet3_assets.py"


rule safety_checker_assets:
    output:
        weights=f"{ASSET_DIRS['safety_checker']}/model.safetensors",
        config=f"{ASSET_DIRS['safety_checker']}/config.json",
        preprocessor=f"{ASSET_DIRS['safety_checker']}/preprocessor_config.json",
        record=ASSET_RECORDS["safety_checker"],
    log:
        "logs/safety_checker_assets.log",
    benchmark:
        "benchmarks/safety_checker_assets.tsv"
    params:
        spec=asset_spec_params("safety_checker"),
    localrule: True
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/classify.yaml"
    script:
        "../../scripts/safety_checker_assets.py"
