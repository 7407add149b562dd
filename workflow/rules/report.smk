# The report reads the tables, the sampled images, the records of the run and the study's
# settings (the configuration without `execution`): exactly its inputs and params.


rule report:
    input:
        metrics=remade_when_stale(plan.REPORT, lambda study: study.metrics_table),
        comparisons=TABLES["comparisons"],
        alignment=TABLES["alignment"],
        flags=TABLES["flags"],
        prompts=set_prompt_table,
        images=report_image_inputs,
        manifests=set_job_paths(plan.MANIFESTS),
        models=set_model_records,
        assets=set_params(lambda study: [asset.record_path for asset in study.report_assets]),
        prompt_source=set_prompt_record,
        template=str(REPORT_TEMPLATE),
        fid=set_fid_table,
    output:
        report=report(
            plan.REPORT,
            caption="../report/report.rst",
            category="Report",
            labels={"file": "{setdir}report.html"},
        ),
    log:
        "logs/{setdir}report.log",
    benchmark:
        "benchmarks/{setdir}report.tsv"
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        settings=STUDY.settings(),
        prompt_set=set_params(lambda study: study.prompt_set),
        # the report lists models and mitigations in the configuration's order
        order=set_params(Study.conditions),
    script:
        "../../scripts/report.py"
