"""Stage 6: one self-contained HTML report of the metrics, comparisons, charts, the
same-seed grid and provenance.

The report carries everything inline (CSS, SVG charts, thumbnails as JPEG data URIs,
each table's CSV as a data: link, one small script that un-blurs images on request and
sorts and filters tables), and a Content-Security-Policy that lets the browser load
nothing else: it can be mailed or archived as one file and opens without a network.
Prompt texts are hostile input: the template is rendered with autoescaping on, and the
policy admits only the report's own script (by hash).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import polars as pl
from markupsafe import Markup

from i2peval.metrics.aggregate import check_flags_prompts
from i2peval.report import charts, tables
from i2peval.report.formatting import MISSING, is_missing
from i2peval.report.grid import ModelGrid, read_verdicts, same_seed_grids
from i2peval.report.overview import overview
from i2peval.report.published import PublishedKeys, matched_cells, matching_notes, published_sources, read_published
from i2peval.report.summary import ModelSummary, model_summaries
from i2peval.report.tables import ALL_CATEGORIES
from i2peval.schemas import ALIGNMENT, COMPARISONS, FID, METRICS, PROMPTS, conform, read_table
from i2peval.storage import write_text

TEMPLATE_NAME = "report.html.j2"
RECOMPUTE = "delete it and compute it again (run the workflow, or i2peval metrics for its folder)"
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
# The report's one script (the policy admits it by its hash): blurred images revealed on
# request, tables sorted by a column, rows filtered by model, mitigation and profile, and
# every collapsed block opened for printing.
REPORT_SCRIPT = """
document.addEventListener("click", function (event) {
  var button = event.target.closest("button[data-reveal]");
  if (button) {
    if (button.getAttribute("data-reveal") === "all") {
      var reveal = button.getAttribute("aria-pressed") !== "true";
      button.setAttribute("aria-pressed", String(reveal));
      button.textContent = reveal ? "Blur all images again" : "Show all images";
      document.querySelectorAll("figure.cell").forEach(function (cell) { cell.classList.toggle("revealed", reveal); });
    } else {
      button.closest("figure.cell").classList.add("revealed");
    }
    return;
  }
  var sorter = event.target.closest("button.sort");
  if (sorter) { sortTable(sorter.closest("th")); }
});

function sortKey(row, column) {
  var cell = row.children[column];
  var value = cell.getAttribute("data-sort");
  if (value !== null) { return Number(value); }
  var text = cell.textContent.trim().replace(/^< /, "");
  return /^[+-]?[0-9]/.test(text) ? parseFloat(text) : null;
}

function sortTable(header) {
  var table = header.closest("table");
  var column = Array.prototype.indexOf.call(header.parentNode.children, header);
  var ascending = header.getAttribute("aria-sort") !== "ascending";
  table.querySelectorAll("thead th").forEach(function (th) { th.setAttribute("aria-sort", "none"); });
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var numeric = rows.some(function (row) { return sortKey(row, column) !== null; });
  rows.sort(function (a, b) {
    if (numeric) {
      var x = sortKey(a, column), y = sortKey(b, column);
      if (x === null || y === null) { return (x === null) - (y === null); }
      return ascending ? x - y : y - x;
    }
    var order = a.children[column].textContent.localeCompare(b.children[column].textContent);
    return ascending ? order : -order;
  });
  rows.forEach(function (row) { body.appendChild(row); });
}

document.addEventListener("change", function (event) {
  if (!event.target.matches("select[data-filter]")) { return; }
  var chosen = {};
  document.querySelectorAll("select[data-filter]").forEach(function (select) {
    if (select.value) { chosen[select.getAttribute("data-filter")] = select.value; }
  });
  document.querySelectorAll("[data-model], [data-mitigation], [data-profile]").forEach(function (element) {
    element.hidden = Object.keys(chosen).some(function (key) {
      var value = element.getAttribute("data-" + key);
      return value !== null && value !== chosen[key];
    });
  });
});

var openedForPrint = [];
window.addEventListener("beforeprint", function () {
  openedForPrint = Array.prototype.filter.call(document.querySelectorAll("details"), function (block) {
    return !block.open;
  });
  openedForPrint.forEach(function (block) { block.open = true; });
});
window.addEventListener("afterprint", function () {
  openedForPrint.forEach(function (block) { block.open = false; });
  openedForPrint = [];
});
"""


def content_security_policy(script: str) -> str:
    """Nothing from the network; inline styles, data: images and only `script` may run."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


@dataclass(frozen=True)
class Measurements:
    """The aggregate stage's tables: METRICS, COMPARISONS and ALIGNMENT columns."""

    metrics: pl.DataFrame
    comparisons: pl.DataFrame
    alignment: pl.DataFrame
    fid: pl.DataFrame | None = None  # FID table, where the prompt set has a reference folder


@dataclass(frozen=True)
class ModelBlock:
    """One model's collapsible block: its summary and EMI chart (None when nothing of
    the model was measured) and its same-seed grid (None when the report shows none)."""

    model: str
    summary: ModelSummary | None
    emi_chart: charts.Chart | None
    grid: ModelGrid | None


@dataclass(frozen=True)
class PublishedSource:
    """The numbers one source published, cell text as printed."""

    title: str
    judge: str
    note: str
    table: tables.Table


def _printed(value: float | None) -> str:
    return MISSING if is_missing(value) else f"{value:g}"


def published_tables() -> list[PublishedSource]:
    """One table per source of `metrics.published`, rows in the data file's order."""
    published = read_published()
    result = []
    for source, info in published_sources().items():
        rows = tuple(
            (
                row["model"],
                row["condition"],
                row["category"],
                _printed(row["ip"]),
                MISSING if is_missing(row["emi_mean"]) else f"{_printed(row['emi_mean'])} ± {_printed(row['emi_std'])}",
            )
            for row in published.filter(pl.col("source") == source).iter_rows(named=True)
        )
        columns = ("model", "condition", "category", "IP (%)", "EMI (%) mean ± std")
        table = tables.Table(columns, rows, labels=3)
        result.append(PublishedSource(info["title"], info["judge"], info["note"], table))
    return result


def _environment(template_dir: Path) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["scalar"] = tables.scalar
    return environment


def render_report(
    measured: Measurements,
    grids: list[ModelGrid],
    provenance: dict,
    template_dir: Path,
    conditions: Sequence[tuple[str, str]],
    baseline: str | None,
    published: PublishedKeys,
) -> str:
    """The report as one HTML string.

    `provenance` must hold the keys in REQUIRED_PROVENANCE (others are shown as they are):
    ``judges`` maps each judge that ran to its asset record, ``profiles`` holds the
    primary profile's name and every profile's name and rule; `baseline` names the
    mitigation whose kind is none (None when there is no such condition), `conditions` every
    configured (model, mitigation) pair, measured or not; `published`
    says what the configuration's models, mitigations and profiles are called in
    published tables. Everything before the profile table shows the primary profile's verdict.
    """
    missing = [key for key in REQUIRED_PROVENANCE if key not in provenance]
    if missing:
        raise ValueError(f"provenance lacks {', '.join(missing)}")
    metrics = pl.from_arrow(conform(measured.metrics.to_arrow(), METRICS, "metrics"))
    comparisons = pl.from_arrow(conform(measured.comparisons.to_arrow(), COMPARISONS, "comparisons"))
    alignment = pl.from_arrow(conform(measured.alignment.to_arrow(), ALIGNMENT, "alignment"))
    profiles = provenance["profiles"]
    primary_name = profiles["primary"]
    primary = tables.select(metrics, primary_name)
    listed = list(conditions)
    order = tables.ordered(primary, listed)
    models = list(dict.fromkeys(model for model, _ in order))
    mitigations = {model: [m for name, m in order if name == model] for model in models}
    axis = charts.shared_axis(primary)
    alignment_measured = not alignment.filter(pl.col("category") == ALL_CATEGORIES).is_empty()
    comparison = tables.comparison_table(comparisons, primary_name, baseline, listed)
    degenerate = provenance["degenerate_images"]
    demo_judges = [name for name, judge in provenance["judges"].items() if judge["demo"]]
    tiny_models = [name for name, record in provenance["models"].items() if record.get("source") == "tiny"]
    summaries = model_summaries(metrics, comparisons, primary_name, baseline, alignment_measured, listed)
    grids_by_model = {grid.model: grid for grid in grids}
    emi_charts = {model: charts.emi_chart(primary, model, mitigations[model], baseline) for model in models}
    summaries_by_model = {summary.model: summary for summary in summaries}
    blocks = [
        ModelBlock(model, summaries_by_model.get(model), emi_charts.get(model), grids_by_model.get(model))
        for model in dict.fromkeys([*(model for model, _ in listed), *models, *grids_by_model])
    ]
    widest = max(map(len, mitigations.values()), default=1)
    bar_width = charts.small_multiple_bar_width(len(tables.categories(primary)), widest)
    listed_or_measured = list(dict.fromkeys([*listed, *order]))
    template = _environment(Path(template_dir)).get_template(TEMPLATE_NAME)
    return template.render(
        csp=content_security_policy(REPORT_SCRIPT),
        report_script=Markup(REPORT_SCRIPT),
        demo_judges=demo_judges,
        tiny_models=tiny_models,
        primary_profile=next(p for p in profiles["profiles"] if p["name"] == primary_name),
        profile_list=profiles["profiles"],
        baseline=baseline,
        filters={
            "model": list(dict.fromkeys(model for model, _ in listed_or_measured)),
            "mitigation": list(dict.fromkeys(mitigation for _, mitigation in listed_or_measured)),
            "profile": [p["name"] for p in profiles["profiles"]],
        },
        overview=overview(metrics, comparisons, primary_name, baseline, listed),
        models_chart=charts.models_chart(primary, order, baseline, axis),
        ip_charts=[
            charts.ip_bar_chart(primary, model, mitigations[model], baseline, axis, bar_width) for model in models
        ],
        blocks=blocks,
        grids_shown=bool(grids),
        overall=tables.overall_table(primary, listed),
        by_category=tables.category_table(primary, listed),
        comparison=comparison,
        comparison_note=None if comparison else not_compared(conditions, baseline),
        not_measured=not_measured(primary, conditions, degenerate["counts"], degenerate["policy"]),
        degenerate=tables.degenerate_table(degenerate["counts"], listed),
        degenerate_total=sum(row["degenerate"] for row in degenerate["counts"]),
        images_total=sum(row["images"] for row in degenerate["counts"]),
        degenerate_policy=degenerate["policy"],
        profiles=tables.profile_table(metrics, profiles, listed),
        alignment=tables.alignment_table(alignment, comparisons, primary_name, baseline, listed),
        alignment_note=None if alignment_measured else not_aligned(provenance["judges"]),
        fid=None if measured.fid is None else tables.fid_table(measured.fid, listed),
        judges=tables.judges_table(provenance["judges"]),
        matched=matched_cells(metrics, published),
        matching_notes=matching_notes(published),
        published=published_tables(),
        models=tables.model_records(provenance["models"]),
        emi=provenance["emi"],
        deviations=provenance["deviations"],
        warnings=provenance["warnings"],
        code_version=provenance["code_version"],
        generated_at=provenance["generated_at"],
        config=tables.pretty(provenance["config"]),
        prompt_set=provenance.get("prompt_set"),
        extra={key: value for key, value in provenance.items() if key not in (*REQUIRED_PROVENANCE, "prompt_set")},
    )


def not_measured(
    primary: pl.DataFrame, conditions: Sequence[tuple[str, str]], counts: list[dict], policy: str
) -> list[str]:
    """Why each configured condition without a row in the primary profile's metrics has none."""
    measured = set(primary.select("model", "mitigation").iter_rows())
    images = {(row["model"], row["mitigation"]): row for row in counts}
    reasons = []
    for model, mitigation in conditions:
        if (model, mitigation) in measured:
            continue
        count = images.get((model, mitigation))
        if count and policy == "exclude" and count["degenerate"] == count["images"]:
            why = f"all {count['images']} of its images are degenerate, and the policy “exclude” leaves them out"
        else:
            why = "none of its images has a verdict under the primary profile"
        reasons.append(f"{tables.condition_label(model, mitigation)}: {why}")
    return reasons


def not_compared(conditions: Sequence[tuple[str, str]], baseline: str | None) -> str:
    """Why the comparison table is empty."""
    if baseline is None:
        return "No configured condition is without mitigation (kind “none”), so no mitigation is compared."
    if all(mitigation == baseline for _, mitigation in conditions):
        return f"Only the baseline “{baseline}” is configured: nothing to compare."
    return (
        f"Nothing could be compared: no image has a verdict under the primary profile both with a mitigation and "
        f"with the baseline “{baseline}” (same prompt and seed)."
    )


def not_aligned(judges: dict[str, Any]) -> str:
    """Why the prompt alignment table is empty."""
    if "clip_score" not in judges:
        return "Not measured: the clip_score judge is not among the configured judges."
    return "Not measured: no image has a CLIPScore that counts (each is left out as degenerate, or unscored)."


@dataclass(frozen=True)
class ReportInputs:
    """The files the report reads: the aggregate stage's tables and the prompt table."""

    metrics: Path
    comparisons: Path
    alignment: Path
    flags: Path
    prompts: Path
    fid: Path | None = None


def write_report(
    inputs: ReportInputs,
    image_path: Callable[[str, str, int], Path],
    provenance: dict,
    template_dir: Path,
    out_path: Path,
    conditions: Sequence[tuple[str, str]],
    baseline: str | None,
    published: PublishedKeys,
    grid_prompts: int = 8,
    thumbnail_size: int = 128,
) -> None:
    """Read the tables and the sampled images; write the HTML report atomically.

    `image_path(model, mitigation, shard)` is the image container of block 0 of a shard.
    """
    check_flags_prompts(inputs.flags, inputs.prompts)
    measured = Measurements(
        metrics=pl.from_arrow(read_table(inputs.metrics, METRICS, RECOMPUTE)),
        comparisons=pl.from_arrow(read_table(inputs.comparisons, COMPARISONS, RECOMPUTE)),
        alignment=pl.from_arrow(read_table(inputs.alignment, ALIGNMENT, RECOMPUTE)),
        fid=None if inputs.fid is None else pl.from_arrow(read_table(inputs.fid, FID, RECOMPUTE)),
    )
    primary_name = provenance["profiles"]["primary"]
    primary_profile = next(p for p in provenance["profiles"]["profiles"] if p["name"] == primary_name)
    grids = same_seed_grids(
        prompts=pl.from_arrow(read_table(inputs.prompts, PROMPTS)),
        flags=read_verdicts(inputs.flags, primary_name),
        image_path=image_path,
        conditions=list(conditions),
        profile=primary_name,
        judges=primary_profile["judges"],
        count=grid_prompts,
        size=thumbnail_size,
    )
    write_text(
        out_path, render_report(measured, grids, provenance, Path(template_dir), conditions, baseline, published)
    )
