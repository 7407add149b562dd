# The report reads the tables, the sampled images, the records of the run and the study's
# settings (the configuration without `execution`): exactly its inputs and params.


rule report:
    input:
        metrics=remade_when_stale(plan.REPORT, TABLES["metrics"]),
        comparisons=TABLES["comparisons"],
        alignment=TABLES["alignment"],
        flags=TABLES["flags"],
        prompts=PROMPTS.table_path,
        images=report_image_inputs,
        manifests=job_paths(plan.MANIFESTS),
        models=model_record_paths(),
        assets=judge_asset_records,
        prompt_source=PROMPTS.record_path,
        template=str(REPORT_TEMPLATE),
    output:
        report=report(
            plan.REPORT,
            caption="../report/report.rst",
            category="Report",
            labels={"file": "report.html"},
        ),
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        settings=STUDY.settings(),
        # the report lists models and mitigations in the configuration's order
        order=STUDY.conditions(),
    script:
        "../../scripts/report.py"
