"""Rule report: one self-contained HTML file with metrics, comparisons, charts, the same-seed grid and provenance
(i2peval.report.run)."""

from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.report.report import ReportInputs
from i2peval.report.run import ReportFiles, report_run
from i2peval.study import Study

study = Study.from_config(snakemake.params.settings, prompt_set=snakemake.params.prompt_set)
report_run(
    study,
    ReportFiles(
        tables=ReportInputs(
            metrics=Path(snakemake.input.metrics),
            comparisons=Path(snakemake.input.comparisons),
            alignment=Path(snakemake.input.alignment),
            flags=Path(snakemake.input.flags),
            prompts=Path(snakemake.input.prompts),
            fid=Path(snakemake.input.fid[0]) if snakemake.input.fid else None,
        ),
        manifests=[Path(path) for path in snakemake.input.manifests],
        model_records={model: Path(path) for model, path in zip(study.models, snakemake.input.models)},
        asset_records={asset.name: Path(path) for asset, path in zip(study.report_assets, snakemake.input.assets)},
        prompt_source=Path(snakemake.input.prompt_source),
        template=Path(snakemake.input.template),
        image_pattern=study.report_image_pattern,
    ),
    Path(snakemake.output.report),
)
