"""Stage 6: one self-contained HTML report of the metrics, a gallery and provenance.

The report carries everything inline (CSS, thumbnails as JPEG data URIs), so it can be
mailed or archived as one file. Prompt texts are hostile input: the template is
rendered with autoescaping on, and the gallery is blurred until the reader asks to
see it. Numbers are formatted here, not in the template, so the template only lays
out strings.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import jinja2
import polars as pl
import pyarrow.parquet as pq
from PIL import Image

from i2peval.generation.imagestore import iter_image_batches
from i2peval.metrics.prompt_sets import ALL_CATEGORIES, ANY_JUDGE
from i2peval.metrics.published import published_sources, read_published
from i2peval.schemas import (
    ALIGNMENT,
    I2P_CATEGORIES,
    IMAGES,
    METRICS,
    PROMPTS,
    conform,
    read_table,
)
from i2peval.storage import write_text

# What each judge is, for the report's list of judges.
JUDGE_TITLES = {
    "q16": "Q16 (CLIP ViT-L/14 + learned prompts): p(inappropriate)",
    "nudenet2": "NudeNet v2 base detector (the paper's): max score per label",
    "nudenet3": "NudeNet 3.4 (bundled 320n detector): max score per label",
    "safety_checker": "Stable Diffusion safety checker: verdict and concept margins",
    "clip_score": "CLIPScore (prompt alignment, the CLIP of Q16): cosine of image and prompt",
}
TEMPLATE_NAME = "report.html.j2"
MISSING = "–"
NOT_AVAILABLE = "n/a"
REQUIRED_PROVENANCE = (
    "config",
    "models",
    "judges",
    "profiles",
    "emi",
    "deviations",
    "degenerate_images",
    "code_version",
    "generated_at",
    "warnings",
)
# Keys shown first, in this order, in the model provenance table; others follow.
MODEL_RECORD_KEYS = ("source", "architecture", "repo_id", "revision", "commit")


@dataclass(frozen=True)
class PublishedTable:
    """The numbers one source published, cell text as printed."""

    title: str
    judge: str
    note: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def _printed(value: float | None) -> str:
    return MISSING if _is_missing(value) else f"{value:g}"


def published_tables() -> list[PublishedTable]:
    """One table per source of `metrics.published`, rows in the data file's order."""
    published = read_published()
    tables = []
    for source, info in published_sources().items():
        rows = published.filter(pl.col("source") == source)
        tables.append(
            PublishedTable(
                title=info["title"],
                judge=info["judge"],
                note=info["note"],
                columns=("model", "condition", "category", "IP (%)", "EMI (%) mean ± std"),
                rows=tuple(
                    (
                        row["model"],
                        row["condition"],
                        row["category"],
                        _printed(row["ip"]),
                        MISSING if _is_missing(row["emi_mean"])
                        else f"{_printed(row['emi_mean'])} ± {_printed(row['emi_std'])}",
                    )
                    for row in rows.iter_rows(named=True)
                ),
            )
        )
    return tables


@dataclass(frozen=True)
class Thumbnail:
    """A downscaled image as a JPEG data URI, with the prompt that made it."""

    prompt_id: int
    image_index: int
    prompt: str
    data_uri: str
    width: int
    height: int


@dataclass(frozen=True)
class Table:
    """Pre-formatted table: header cells and rows of cell text."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class GallerySection:
    """The thumbnails of one model x mitigation."""

    model: str
    mitigation: str
    thumbnails: tuple[Thumbnail, ...]


def _decimal(value: float) -> Decimal:
    # via repr: the shortest decimal that round-trips, so 0.3775 is 0.3775, not 0.37749999...
    return Decimal(repr(float(value)))


def _round2(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _is_missing(value: float | None) -> bool:
    return value is None or value != value  # NaN is the only value unequal to itself


def percent(fraction: float | None) -> str:
    """A fraction as a percentage with 2 decimals (0.3775 -> "37.75"); "n/a" when missing."""
    if _is_missing(fraction):
        return NOT_AVAILABLE
    return _round2(_decimal(fraction) * 100)


def emi_cell(mean: float | None, std: float | None) -> str:
    """EMI as "mean ± std" in percent, "n/a" when it could not be estimated."""
    if _is_missing(mean):
        return NOT_AVAILABLE
    return f"{percent(mean)} ± {percent(std)}"


def reduction_cell(baseline: float | None, mitigated: float | None) -> str:
    """Drop of IP from `baseline` to `mitigated`: "pp (relative %)"; positive = fewer flagged."""
    if _is_missing(baseline) or _is_missing(mitigated):
        return MISSING
    drop = _decimal(baseline) - _decimal(mitigated)
    relative = _round2(drop / _decimal(baseline) * 100) + " %" if baseline else NOT_AVAILABLE
    return f"{_round2(drop * 100)} pp ({relative})"


def _image_to_data_uri(png: bytes, size: int) -> tuple[str, int, int]:
    with Image.open(io.BytesIO(png)) as image:
        image = image.convert("RGB")
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
        encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
        return f"data:image/jpeg;base64,{encoded}", image.width, image.height


def thumbnails(images_path: Path, prompts: dict[int, str], limit: int, size: int) -> list[Thumbnail]:
    """The first `limit` images of an image container (IMAGES schema), at most `size` px a side.

    Raises ValueError when an image's prompt_id is not in `prompts`.
    """
    if limit <= 0:
        return []
    conform(pq.ParquetFile(images_path).schema_arrow.empty_table(), IMAGES, images_path)
    result = []
    for prompt_ids, image_indices, pngs in iter_image_batches(images_path, batch_size=limit):
        for prompt_id, image_index, png in zip(prompt_ids, image_indices, pngs):
            if prompt_id not in prompts:
                raise ValueError(f"{images_path}: prompt_id {prompt_id} is not in the prompt table")
            data_uri, width, height = _image_to_data_uri(png, size)
            result.append(Thumbnail(prompt_id, image_index, prompts[prompt_id], data_uri, width, height))
            if len(result) == limit:
                return result
    return result


def conditions(metrics: pl.DataFrame, baseline: str | None) -> list[tuple[str, str]]:
    """(model, mitigation) pairs: models in order of appearance, the `baseline` first within a model."""
    seen = list(dict.fromkeys(metrics.select("model", "mitigation").iter_rows()))
    models = list(dict.fromkeys(model for model, _ in seen))
    return sorted(
        seen,
        key=lambda pair: (models.index(pair[0]), pair[1] != baseline, seen.index(pair)),
    )


def categories(metrics: pl.DataFrame) -> list[str]:
    """I2P categories in I2P order, then any other label found, then "all"."""
    found = metrics.get_column("category").unique(maintain_order=True).to_list()
    others = [c for c in found if c not in I2P_CATEGORIES and c != ALL_CATEGORIES]
    return [*I2P_CATEGORIES, *others, ALL_CATEGORIES]


def _rows_by_key(metrics: pl.DataFrame) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(row["model"], row["mitigation"], row["category"]): row for row in metrics.iter_rows(named=True)}


def _condition_label(model: str, mitigation: str) -> str:
    return f"{model} / {mitigation}"


def overall_table(metrics: pl.DataFrame, baseline: str | None) -> Table:
    """Per model x mitigation: counts, IP and EMI over all categories."""
    by_key = _rows_by_key(metrics)
    rows = []
    for model, mitigation in conditions(metrics, baseline):
        row = by_key.get((model, mitigation, ALL_CATEGORIES))
        if row is None:
            continue
        rows.append(
            (
                model,
                mitigation,
                str(row["n_prompts"]),
                str(row["n_images"]),
                str(row["n_unscored"]),
                str(row["n_flagged"]),
                percent(row["inappropriate_probability"]),
                emi_cell(row["emi_mean"], row["emi_std"]),
            )
        )
    columns = ("model", "mitigation", "prompts", "images", "unscored", "flagged", "IP (%)", "EMI (%) mean ± std")
    return Table(columns, tuple(rows))


def category_table(metrics: pl.DataFrame, baseline: str | None) -> Table:
    """IP in percent; rows = categories, columns = model x mitigation."""
    by_key = _rows_by_key(metrics)
    pairs = conditions(metrics, baseline)
    rows = []
    for category in categories(metrics):
        cells = []
        for model, mitigation in pairs:
            row = by_key.get((model, mitigation, category))
            cells.append(MISSING if row is None else percent(row["inappropriate_probability"]))
        rows.append((category, *cells))
    return Table(("category", *(_condition_label(*pair) for pair in pairs)), tuple(rows))


def reduction_table(metrics: pl.DataFrame, baseline: str | None) -> Table | None:
    """IP drop of each mitigation against its model's `baseline` (the condition whose kind is
    none); None when there is nothing to compare."""
    by_key = _rows_by_key(metrics)
    pairs = conditions(metrics, baseline)
    baselines = {model for model, mitigation in pairs if mitigation == baseline}
    compared = [(m, g) for m, g in pairs if m in baselines and g != baseline]
    if not compared:
        return None
    rows = []
    for category in categories(metrics):
        cells = []
        for model, mitigation in compared:
            unmitigated = by_key.get((model, baseline, category), {})
            mitigated = by_key.get((model, mitigation, category), {})
            cells.append(
                reduction_cell(
                    unmitigated.get("inappropriate_probability"),
                    mitigated.get("inappropriate_probability"),
                )
            )
        rows.append((category, *cells))
    return Table(("category", *(_condition_label(*pair) for pair in compared)), tuple(rows))


def degenerate_table(counts: list[dict[str, Any]]) -> Table:
    """Per model x mitigation: images made, how many are degenerate, and why.

    `counts` rows hold model, mitigation, architecture, images, degenerate and
    reasons (a list of {"degenerate": reason, "count": n}), as
    metrics.degenerate.degenerate_counts gives them.
    """
    rows = tuple(
        (
            row["model"],
            row["architecture"],
            row["mitigation"],
            str(row["images"]),
            str(row["degenerate"]),
            "; ".join(f"{reason['degenerate']}: {reason['count']}" for reason in row["reasons"]) or MISSING,
        )
        for row in counts
    )
    return Table(("model", "architecture", "mitigation", "images", "degenerate", "reasons"), rows)


def profile_table(metrics: pl.DataFrame, profiles: dict[str, Any], baseline: str | None) -> Table:
    """One row per judge profile (the primary first): its rule, then IP (%) of every condition
    over all categories, then the images it could not score."""
    pairs = conditions(metrics, baseline)
    rows = []
    for profile in profiles["profiles"]:
        name = profile["name"]
        by_key = _rows_by_key(metrics.filter(pl.col("profile") == name))
        cells = []
        unscored = 0
        for model, mitigation in pairs:
            row = by_key.get((model, mitigation, ALL_CATEGORIES))
            cells.append(MISSING if row is None else percent(row["inappropriate_probability"]))
            unscored += 0 if row is None else row["n_unscored"]
        label = f"{name} (primary)" if name == profiles["primary"] else name
        rows.append((label, profile["rule"], *cells, str(unscored)))
    columns = ("profile", "flags an image when", *(_condition_label(*pair) for pair in pairs), "unscored images")
    return Table(columns, tuple(rows))


def alignment_table(alignment: pl.DataFrame, baseline: str | None) -> Table | None:
    """Per model x mitigation, all categories: images, unscored, CLIPScore mean ± std and its
    change against the model's `baseline` condition; None when alignment was not measured."""
    overall = alignment.filter(pl.col("category") == ALL_CATEGORIES)
    if overall.is_empty():
        return None
    by_key = {(row["model"], row["mitigation"]): row for row in overall.iter_rows(named=True)}
    rows = []
    for model, mitigation in conditions(overall, baseline):
        row = by_key[(model, mitigation)]
        reference = by_key.get((model, baseline))
        change = MISSING
        if reference is not None and mitigation != baseline and not _is_missing(row["clip_score_mean"]) \
                and not _is_missing(reference["clip_score_mean"]):
            change = f"{row['clip_score_mean'] - reference['clip_score_mean']:+.2f}"
        mean = NOT_AVAILABLE if _is_missing(row["clip_score_mean"]) else f"{row['clip_score_mean']:.2f}"
        std = NOT_AVAILABLE if _is_missing(row["clip_score_std"]) else f"{row['clip_score_std']:.2f}"
        rows.append((model, mitigation, str(row["n_images"]), str(row["n_unscored"]), f"{mean} ± {std}", change))
    columns = ("model", "mitigation", "images", "unscored", "CLIPScore mean ± std", f"change against {baseline}")
    return Table(columns, tuple(rows))


def judges_table(judges: dict[str, dict[str, Any]]) -> Table:
    """Each judge that ran: what it is, where its weights come from, whether they are demo
    weights, and the sha256 of every file its record stands for."""
    rows = []
    for name, judge in judges.items():
        record = judge["record"]
        origin = record.get("source", "")
        for key in ("repo_id", "revision", "commit", "version"):
            if record.get(key):
                origin += f" {key}={record[key]}"
        for key in ("checkpoint", "classes"):
            if isinstance(record.get(key), dict):
                origin += f" {key}={record[key]['url']}"
        files = "\n".join(f"{file}: {sha}" for file, sha in judge["files"].items())
        rows.append((name, JUDGE_TITLES.get(name, name), "demo weights" if judge["demo"] else "real", origin, files))
    return Table(("judge", "what", "weights", "from", "files (sha256)"), tuple(rows))


def gallery_sections(
    gallery: dict[tuple[str, str], list[Thumbnail]], order: list[tuple[str, str]]
) -> list[GallerySection]:
    """Gallery entries in the tables' condition order; conditions without metrics last."""
    keys = [key for key in order if key in gallery] + [key for key in gallery if key not in order]
    return [GallerySection(model, mitigation, tuple(gallery[(model, mitigation)])) for model, mitigation in keys]


def pretty(value: Any) -> str:
    """Indented JSON for nested provenance values; non-JSON values via str()."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _model_records(models: dict[str, dict[str, Any]]) -> Table:
    keys = list(MODEL_RECORD_KEYS)
    for record in models.values():
        keys += [key for key in record if key not in keys]
    rows = tuple(
        (name, *(_scalar(record.get(key)) for key in keys)) for name, record in models.items()
    )
    return Table(("model", *keys), rows)


def _scalar(value: Any) -> str:
    if value is None:
        return MISSING
    return value if isinstance(value, str) else pretty(value)


def _environment(template_dir: Path) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["scalar"] = _scalar
    return environment


def render_report(
    metrics: pl.DataFrame,
    alignment: pl.DataFrame,
    gallery: dict[tuple[str, str], list[Thumbnail]],
    provenance: dict,
    template_dir: Path,
    baseline: str | None,
) -> str:
    """The report as one HTML string.

    `metrics` has the METRICS columns (every judge profile), `alignment` the ALIGNMENT
    columns; `gallery` maps (model, mitigation) to thumbnails; `provenance` must hold the
    keys in REQUIRED_PROVENANCE (others are shown as they are): ``judges`` maps each judge
    that ran to its asset record, ``profiles`` holds the primary profile's name and every
    profile's name and rule; `baseline` names the mitigation whose kind is none (None when
    there is no such condition). The tables before the profile comparison show the primary
    profile.
    """
    missing = [key for key in REQUIRED_PROVENANCE if key not in provenance]
    if missing:
        raise ValueError(f"provenance lacks {', '.join(missing)}")
    metrics = pl.from_arrow(conform(metrics.to_arrow(), METRICS, "metrics")).filter(pl.col("judge") == ANY_JUDGE)
    alignment = pl.from_arrow(conform(alignment.to_arrow(), ALIGNMENT, "alignment"))
    profiles = provenance["profiles"]
    primary = metrics.filter(pl.col("profile") == profiles["primary"])
    order = conditions(primary, baseline)
    demo_judges = [name for name, judge in provenance["judges"].items() if judge["demo"]]
    tiny_models = [name for name, record in provenance["models"].items() if record.get("source") == "tiny"]
    template = _environment(template_dir).get_template(TEMPLATE_NAME)
    return template.render(
        demo_judges=demo_judges,
        tiny_models=tiny_models,
        primary_profile=next(p for p in profiles["profiles"] if p["name"] == profiles["primary"]),
        overall=overall_table(primary, baseline),
        by_category=category_table(primary, baseline),
        baseline=baseline,
        reduction=reduction_table(primary, baseline),
        degenerate=degenerate_table(provenance["degenerate_images"]["counts"]),
        degenerate_policy=provenance["degenerate_images"]["policy"],
        profiles=profile_table(metrics, profiles, baseline),
        alignment=alignment_table(alignment, baseline),
        judges=judges_table(provenance["judges"]),
        published=published_tables(),
        gallery=gallery_sections(gallery, order),
        models=_model_records(provenance["models"]),
        emi=provenance["emi"],
        deviations=provenance["deviations"],
        warnings=provenance["warnings"],
        code_version=provenance["code_version"],
        generated_at=provenance["generated_at"],
        config=pretty(provenance["config"]),
        extra={key: value for key, value in provenance.items() if key not in REQUIRED_PROVENANCE},
    )


def write_report(
    metrics_path: Path,
    alignment_path: Path,
    prompts_path: Path,
    image_paths: dict[tuple[str, str], Path],
    provenance: dict,
    template_dir: Path,
    out_path: Path,
    baseline: str | None,
    thumbnails_per_condition: int = 8,
    thumbnail_size: int = 128,
) -> None:
    """Read metrics, prompt alignment, prompts and image containers; write the HTML report atomically."""
    metrics = pl.from_arrow(read_table(metrics_path, METRICS))
    alignment = pl.from_arrow(read_table(alignment_path, ALIGNMENT))
    prompt_table = read_table(prompts_path, PROMPTS)
    prompts = dict(zip(prompt_table["prompt_id"].to_pylist(), prompt_table["text"].to_pylist()))
    gallery = {
        condition: thumbnails(Path(path), prompts, thumbnails_per_condition, thumbnail_size)
        for condition, path in image_paths.items()
    }
    write_text(out_path, render_report(metrics, alignment, gallery, provenance, Path(template_dir), baseline))
