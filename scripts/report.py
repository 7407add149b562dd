"""Rule report: one self-contained HTML file with metrics, comparisons, charts, the same-seed grid and provenance."""

from datetime import datetime, timezone
from pathlib import Path

from i2peval.logs import to_log_file

to_log_file(snakemake.log[0])

from i2peval.deviations import protocol_deviations
from i2peval.generation.snapshots import read_model_record
from i2peval.judges.assets import JUDGE_ASSET, asset_files, read_asset_record, unpinned_warnings
from i2peval.judges.profiles import profiles_from_config
from i2peval.metrics.degenerate import degenerate_counts, read_degenerate
from i2peval.plan import unpinned_revisions
from i2peval.provenance import code_version, summarise_manifests
from i2peval.report.published import published_keys
from i2peval.report.report import ReportInputs, write_report
from i2peval.storage import read_json_record

manifest_paths = [Path(path) for path in snakemake.input.manifests]
models = snakemake.params.models
judging = snakemake.params.judging
asset_records = {
    asset: (Path(path), read_asset_record(asset, path))
    for asset, path in zip(snakemake.params.assets, snakemake.input.assets)
}
judges = {}
for judge in judging["judges"]:
    path, record = asset_records[JUDGE_ASSET[judge]]
    files = asset_files(JUDGE_ASSET[judge], record, path)
    judges[judge] = {
        "demo": bool(record["demo"]),
        "record": record,
        "files": {Path(file).name: sha256 for file, sha256 in files.items()},
    }
profiles = profiles_from_config(judging)
model_records = {model: read_model_record(Path(path)) for model, path in zip(models, snakemake.input.models)}
provenance = {
    "config": snakemake.config,
    "models": model_records,
    "judges": judges,
    "profiles": {
        "primary": judging["primary_profile"],
        "profiles": [
            {
                "name": profile.name,
                "rule": profile.describe(),
                "description": profile.description,
                "judges": profile.judges(),
            }
            for profile in profiles
        ],
    },
    "prompt_source": read_json_record(Path(snakemake.input.prompt_source), required=("source", "prompts")),
    "generation": summarise_manifests(manifest_paths),
    "emi": snakemake.params.emi,
    "deviations": protocol_deviations(snakemake.config, model_records),
    "degenerate_images": {
        "policy": snakemake.params.degenerate_images["policy"],
        "counts": degenerate_counts(read_degenerate(manifest_paths)).to_dicts(),
    },
    "warnings": unpinned_revisions(snakemake.config["models"]) + unpinned_warnings(snakemake.config, asset_records),
    "code_version": code_version(),
    "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
}
write_report(
    inputs=ReportInputs(
        metrics=Path(snakemake.input.metrics),
        comparisons=Path(snakemake.input.comparisons),
        alignment=Path(snakemake.input.alignment),
        flags=Path(snakemake.input.flags),
        prompts=Path(snakemake.input.prompts),
    ),
    image_path=lambda model, mitigation, shard: Path(
        snakemake.params.image_pattern.format(model=model, mitigation=mitigation, shard=shard)
    ),
    provenance=provenance,
    template_dir=Path(snakemake.input.template).parent,
    out_path=Path(snakemake.output.report),
    baseline=snakemake.params.baseline,
    published=published_keys(snakemake.config),
    grid_prompts=snakemake.params.report["grid_prompts"],
    thumbnail_size=snakemake.params.report["thumbnail_size"],
)
