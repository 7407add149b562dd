"""The report of a run: its provenance gathered from the run's records, then the HTML.

Used by the report rule and by ``i2peval report``, which renders a finished run's report
from its stored tables (or from tables ``i2peval metrics`` recomputed) without Snakemake.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from i2peval import plan
from i2peval.prompts.source import prompt_table, prompts_folder
from i2peval.report.deviations import protocol_deviations
from i2peval.generation.mitigations import baseline_mitigation, resolve_mitigations
from i2peval.models.snapshots import read_model_record
from i2peval.judges.assets import (
    JUDGE_ASSET,
    asset_files,
    asset_folder,
    assets_of,
    judging,
    read_asset_record,
    record_path,
    unpinned_warnings,
)
from i2peval.metrics.profiles import profiles_from_config
from i2peval.metrics.degenerate import degenerate_counts, read_degenerate
from i2peval.provenance import code_version, summarise_manifests
from i2peval.report import REPORT_TEMPLATE
from i2peval.report.published import published_keys
from i2peval.report.report import ReportInputs, write_report
from i2peval.storage import read_json_record



@dataclass(frozen=True)
class RunFiles:
    """What the report of a run reads besides its tables."""

    tables: ReportInputs
    manifests: list[Path]
    model_records: dict[str, Path]
    asset_records: dict[str, Path]
    prompt_source: Path
    image_pattern: str  # {model}, {mitigation}, {shard}: block 0 of a shard, under images_root
    template: Path
    images_root: Path = Path(".")


def run_files(config: dict[str, Any], directory: Path, metrics_dir: Path | None = None) -> RunFiles:
    """Where the workflow stored the files of the run of `config` in `directory`; the
    tables from `metrics_dir` when given (e.g. what ``i2peval metrics`` recomputed)."""
    metrics_dir = metrics_dir or directory / "results" / "metrics"
    prompts_dir = directory / prompts_folder(config["prompts"])
    jobs = plan.image_jobs(**plan.image_layout(config))
    return RunFiles(
        tables=ReportInputs(
            metrics=metrics_dir / "metrics.parquet",
            comparisons=metrics_dir / "comparisons.parquet",
            alignment=metrics_dir / "alignment.parquet",
            flags=metrics_dir / "image_flags.parquet",
            prompts=directory / prompt_table(config),
        ),
        manifests=[directory / job.path(plan.MANIFESTS) for job in jobs],
        model_records={
            name: directory / path for name, path in plan.model_records(config).items()
        },
        asset_records={
            asset: directory / record_path(asset, asset_folder(asset, config))
            for asset in assets_of(judging(config)["judges"])
        },
        prompt_source=prompts_dir / "source.json",
        image_pattern=plan.REPORT_IMAGES,
        template=Path(str(REPORT_TEMPLATE)),
        images_root=directory,
    )


def missing_files(files: RunFiles) -> list[Path]:
    """The files of `files` that are not there."""
    tables = files.tables
    paths = [tables.metrics, tables.comparisons, tables.alignment, tables.flags, tables.prompts, files.prompt_source,
             *files.manifests, *files.model_records.values(), *files.asset_records.values(), files.template]
    return [path for path in paths if not path.is_file()]


def provenance(config: dict[str, Any], files: RunFiles) -> dict[str, Any]:
    """Everything the report says about where its numbers come from."""
    judged = judging(config)
    asset_records = {asset: (path, read_asset_record(asset, path)) for asset, path in files.asset_records.items()}
    judges = {}
    for judge in judged["judges"]:
        path, record = asset_records[JUDGE_ASSET[judge]]
        judges[judge] = {
            "demo": bool(record["demo"]),
            "record": record,
            "files": {Path(file).name: sha256 for file, sha256 in asset_files(JUDGE_ASSET[judge], record, path).items()},
        }
    model_records = {model: read_model_record(path) for model, path in files.model_records.items()}
    return {
        "config": config,
        "models": model_records,
        "judges": judges,
        "profiles": {
            "primary": judged["primary_profile"],
            "profiles": [
                {"name": profile.name, "rule": profile.describe(), "description": profile.description, "judges": profile.judges()}
                for profile in profiles_from_config(judged)
            ],
        },
        "prompt_source": read_json_record(files.prompt_source, required=("source", "prompts")),
        "generation": summarise_manifests(files.manifests),
        "emi": config["emi"],
        "deviations": protocol_deviations(config, model_records),
        "degenerate_images": {
            "policy": config["degenerate_images"]["policy"],
            "counts": degenerate_counts(read_degenerate(files.manifests)).to_dicts(),
        },
        "warnings": plan.unpinned_revisions(config["models"]) + unpinned_warnings(config, asset_records),
        "code_version": code_version(),
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def report_run(config: dict[str, Any], files: RunFiles, out_path: Path) -> None:
    """Write the report of the run of the validated `config` whose files are `files`."""
    write_report(
        inputs=files.tables,
        image_path=lambda model, mitigation, shard: files.images_root
        / files.image_pattern.format(model=model, mitigation=mitigation, shard=shard),
        provenance=provenance(config, files),
        template_dir=files.template.parent,
        out_path=out_path,
        baseline=baseline_mitigation(resolve_mitigations(config)),
        published=published_keys(config),
        grid_prompts=config["report"]["grid_prompts"],
        thumbnail_size=config["report"]["thumbnail_size"],
    )
