"""The report of a run: its provenance gathered from the run's records, then the HTML.

Used by the report rule and by ``i2peval report``, which renders a finished run's report
from its stored tables (or from tables ``i2peval metrics`` recomputed) without Snakemake.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from i2peval.config import prompt_set_sections
from i2peval.judges.assets import asset_files, read_asset_record
from i2peval.judges.registry import JUDGES
from i2peval.metrics.degenerate import degenerate_counts, read_degenerate
from i2peval.metrics.manifests import read_manifests
from i2peval.models.snapshots import read_model_record
from i2peval.plan import MANIFESTS, REPORT, REPORT_IMAGES, metrics_tables, set_folder
from i2peval.prompts.source import PromptSource, read_source_record
from i2peval.provenance import code_version, summarise_manifests
from i2peval.report import REPORT_TEMPLATE
from i2peval.report.deviations import protocol_deviations
from i2peval.report.published import published_keys
from i2peval.report.report import ReportInputs, write_report
from i2peval.study import Study


@dataclass(frozen=True)
class ReportFiles:
    """What the report of a run reads besides its tables."""

    tables: ReportInputs
    manifests: list[Path]
    model_records: dict[str, Path]
    asset_records: dict[str, Path]
    prompt_source: Path
    template: Path
    # {model}, {mitigation}, {shard}: block 0 of a shard of the prompt set, under images_root
    image_pattern: str = REPORT_IMAGES.replace("{setdir}", "")
    images_root: Path = Path(".")


def report_files(study: Study, directory: Path, metrics_dir: Path | None = None) -> ReportFiles:
    """Where the workflow stored the files of the run of `study` in `directory`; the tables
    from `metrics_dir` when given (e.g. what ``i2peval metrics`` recomputed)."""
    tables = metrics_tables(metrics_dir or directory / study.metrics_dir)
    return ReportFiles(
        tables=ReportInputs(
            metrics=tables["metrics"],
            comparisons=tables["comparisons"],
            alignment=tables["alignment"],
            flags=tables["flags"],
            prompts=directory / study.prompts.table_path,
            fid=directory / study.fid_table if study.fid_reference is not None else None,
        ),
        manifests=[directory / job.path(MANIFESTS) for job in study.image_jobs()],
        model_records={name: directory / model.record_path for name, model in study.models.items()},
        asset_records={asset.name: directory / asset.record_path for asset in study.report_assets},
        prompt_source=directory / study.prompts.record_path,
        template=Path(str(REPORT_TEMPLATE)),
        image_pattern=study.report_image_pattern,
        images_root=directory,
    )


def missing_files(files: ReportFiles) -> list[Path]:
    """The files of `files` that are not there."""
    tables = files.tables
    paths = [tables.metrics, tables.comparisons, tables.alignment, tables.flags, tables.prompts, files.prompt_source,
             *files.manifests, *files.model_records.values(), *files.asset_records.values(), files.template,
             *([tables.fid] if tables.fid is not None else [])]
    return [path for path in paths if not path.is_file()]


def provenance(study: Study, files: ReportFiles) -> dict[str, Any]:
    """Everything the report says about where its numbers come from."""
    asset_records = {asset: (path, read_asset_record(asset, path)) for asset, path in files.asset_records.items()}
    judges = {}
    for judge in study.judges:
        asset = JUDGES[judge].asset
        path, record = asset_records[asset]
        judges[judge] = {
            "demo": bool(record["demo"]),
            "record": record,
            "files": {Path(file).name: sha256 for file, sha256 in asset_files(asset, record, path).items()},
        }
    model_records = {model: read_model_record(path) for model, path in files.model_records.items()}
    return {
        "config": study.settings(),
        "models": model_records,
        "judges": judges,
        "profiles": {
            "primary": study.primary_profile.name,
            "profiles": [
                {
                    "name": profile.name,
                    "rule": profile.describe(),
                    "description": profile.description,
                    "judges": profile.judges(),
                }
                for profile in study.profiles
            ],
        },
        "prompt_source": read_source_record(files.prompt_source),
        "prompt_set": prompt_set_summary(study),
        "generation": summarise_manifests(files.manifests),
        "emi": asdict(study.judging.settings.emi),
        "deviations": protocol_deviations(study, model_records),
        "degenerate_images": {
            "policy": study.judging.settings.degenerate_policy,
            "counts": degenerate_counts(read_degenerate(files.manifests)).to_dicts(),
        },
        "warnings": unpinned_warnings(study, asset_records),
        "code_version": code_version(),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def prompt_set_summary(study: Study) -> dict[str, Any]:
    """The prompt set the report measures, and every set of the study: its source, its
    prompt count where known before running, where its fields come from, and the path of
    its report relative to this one."""
    here = Path(study.report_path).parent
    sets = []
    for name, section in sorted(prompt_set_sections(study.config).items()):
        source = PromptSource.from_section(section, study.prompts.root)
        sets.append(
            {
                "name": name,
                "source": source.describe(),
                "prompts": source.known_count(),
                "fields": source.file_columns.summary(),
                "href": Path(os.path.relpath(REPORT.format(setdir=set_folder(name)), here)).as_posix(),
            }
        )
    this = next(entry for entry in sets if entry["name"] == study.prompt_set)
    return {**this, "others": [entry for entry in sets if entry is not this], "sets": sets}


def unpinned_warnings(study: Study, asset_records: dict[str, tuple[Path, dict[str, Any]]]) -> list[str]:
    """Warnings for model revisions and judge weights whose content nothing pins."""
    warnings = [warning for model in study.models.values() if (warning := model.unpinned_warning())]
    for asset in study.report_assets:
        warnings += asset.unpinned_warnings(*asset_records[asset.name])
    return warnings


def report_run(study: Study, files: ReportFiles, out_path: Path) -> None:
    """Write the report of the run of `study` whose files are `files`, once its manifests
    are found to record the settings the report will state (`StaleImages` otherwise)."""
    read_manifests(files.manifests, study.image_settings())
    stated = provenance(study, files)
    write_report(
        inputs=files.tables,
        image_path=lambda model, mitigation, shard: files.images_root
        / files.image_pattern.format(model=model, mitigation=mitigation, shard=shard),
        provenance=stated,
        template_dir=files.template.parent,
        out_path=out_path,
        conditions=study.conditions(),
        baseline=study.baseline,
        published=published_keys(study, {model: record["architecture"] for model, record in stated["models"].items()}),
        grid_prompts=study.report.grid_prompts,
        thumbnail_size=study.report.thumbnail_size,
    )
