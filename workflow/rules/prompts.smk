# One prompts rule per prompt folder (`prompt_rules`): a set's shard count fixes its outputs.
for prompt_study in prompt_rules():

    rule:
        name:
            "prompts" if not prompt_study.setdir else f"prompts_{prompt_study.prompt_set.replace('-', '_')}"
        input:
            csv=[prompt_study.prompts.csv] if prompt_study.prompts.source == "csv" else [],
        output:
            table=prompt_study.prompts.table_path,
            shards=expand(prompt_study.prompts.shard_pattern, shard=range(prompt_study.prompts.shards)),
            source=prompt_study.prompts.record_path,
        log:
            f"logs/{prompt_study.setdir}prompts.log",
        benchmark:
            f"benchmarks/{prompt_study.setdir}prompts.tsv"
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        threads: 1
        resources:
            mem_mb=2000,
        params:
            source=prompt_study.prompts.params(),
        script:
            "../../scripts/prompts.py"
