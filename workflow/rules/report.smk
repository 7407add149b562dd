rule report:
    input:
        metrics="results/metrics/metrics.parquet",
        comparisons="results/metrics/comparisons.parquet",
        alignment="results/metrics/alignment.parquet",
        flags="results/metrics/image_flags.parquet",
        prompts=PROMPT_TABLE,
        images=report_image_inputs,
        manifests=job_paths(plan.MANIFESTS),
        models=[MODEL_RECORDS[model] for model in MODELS],
        assets=judge_asset_records,
        prompt_source=f"{PROMPTS_DIR}/source.json",
        template=REPORT_TEMPLATE,
    output:
        report=report(
            "results/report.html",
            caption="../report/report.rst",
            category="Report",
            labels={"file": "report.html"},
        ),
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    params:
        models=MODELS,
        baseline=BASELINE,
        # what the published tables call models and conditions (report.published)
        published_as={name: spec.get("published_as") for name, spec in sorted(config["models"].items())},
        mitigations=MITIGATION_SETTINGS,
        image_pattern=report_image_pattern,
        report=config["report"],
        judging=JUDGING,
        assets=JUDGE_ASSETS,
        emi=config["emi"],
        degenerate_images=config["degenerate_images"],
    localrule: True
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/report.py"
