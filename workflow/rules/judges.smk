# Each judge asset's weights, in folders named after the settings that decide them, with a
# record listing their sha256 (checked by every classify job before loading). NudeNet 3's
# detector ships inside the nudenet package: its record pins the installed file. One
# script serves every asset rule: it reads the asset's name from its record's file name.


rule q16_assets:
    output:
        files=ASSETS["q16"].file_paths(),
        record=ASSETS["q16"].record_path,
    log:
        "logs/q16_assets.log",
    benchmark:
        "benchmarks/q16_assets.tsv"
    localrule: True
    conda:
        "../../envs/classify.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        settings=ASSETS["q16"].settings,
    script:
        "../../scripts/judge_assets.py"


rule nudenet2_assets:
    output:
        files=ASSETS["nudenet2"].file_paths(),
        record=ASSETS["nudenet2"].record_path,
    log:
        "logs/nudenet2_assets.log",
    benchmark:
        "benchmarks/nudenet2_assets.tsv"
    localrule: True
    conda:
        "../../envs/classify.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        settings=ASSETS["nudenet2"].settings,
    script:
        "../../scripts/judge_assets.py"


# No params: the record stands for whichever nudenet is installed.
rule nudenet3_assets:
    output:
        record=ASSETS["nudenet3"].record_path,
    log:
        "logs/nudenet3_assets.log",
    benchmark:
        "benchmarks/nudenet3_assets.tsv"
    localrule: True
    conda:
        "../../envs/classify.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../../scripts/judge_assets.py"


rule safety_checker_assets:
    output:
        files=ASSETS["safety_checker"].file_paths(),
        record=ASSETS["safety_checker"].record_path,
    log:
        "logs/safety_checker_assets.log",
    benchmark:
        "benchmarks/safety_checker_assets.tsv"
    localrule: True
    conda:
        "../../envs/classify.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        settings=ASSETS["safety_checker"].settings,
    script:
        "../../scripts/judge_assets.py"
