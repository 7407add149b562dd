"""The report's tables: header cells and rows of formatted cells.

Metrics come per profile x judge x model x mitigation x category (schemas.METRICS); the
tables below show the primary profile's verdict (judge "any") unless they say otherwise.
Conditions are rows, in the order the configuration lists them (`ordered`), and
categories are columns, so a table's width does not grow with the study. Each row says
which model, mitigation and profile it belongs to, for the report's filter; each table
can be downloaded as CSV (the cells' text as shown).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from i2peval.judges.registry import JUDGES
from i2peval.metrics.prompt_sets import ALL_CATEGORIES, ANY_JUDGE, HARD
from i2peval.models.overrides import COMPONENTS
from i2peval.prompts.i2p import I2P_CATEGORIES
from i2peval.report.formatting import (
    MISSING,
    NOT_AVAILABLE,
    clip_points,
    emi_cell,
    interval,
    is_missing,
    p_value,
    percent,
    signed_points,
)

# Keys shown first, in this order, in the model provenance table; others follow.
MODEL_RECORD_KEYS = ("source", "architecture", "repo_id", "revision", "commit")


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, smaller lines under it (an interval, a p-value), a value
    to sort by, a tooltip, and text shown only when the reader opens the cell."""

    text: str
    notes: tuple[str, ...] = ()
    sort: float | None = None
    title: str = ""
    collapsed: str = ""

    def __str__(self) -> str:
        return " ".join((self.text, *self.notes, self.collapsed)).strip()


CellLike = str | Cell


@dataclass(frozen=True)
class Table:
    """Header cells and rows; `labels` leading cells of a row name it (row headers), and
    `keys` gives each row's model, mitigation and profile (those it has) for the filter."""

    columns: tuple[str, ...]
    rows: tuple[tuple[CellLike, ...], ...]
    labels: int = 1
    keys: tuple[dict[str, str], ...] = field(default=())

    def texts(self) -> tuple[tuple[str, ...], ...]:
        """The rows as plain text, each cell's lines joined by spaces."""
        return tuple(tuple(str(cell) for cell in row) for row in self.rows)

    def csv(self) -> str:
        """The table as CSV: the header, then each row's cells as text."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.texts())
        return buffer.getvalue()

    def row_keys(self, index: int) -> dict[str, str]:
        return self.keys[index] if self.keys else {}


def ordered(frame: pl.DataFrame, listed: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (model, mitigation) pairs `frame` holds: those of `listed` (the configuration's
    order) first, in that order, then any others in order of appearance."""
    present = dict.fromkeys(frame.select("model", "mitigation").iter_rows())
    first = [pair for pair in listed if pair in present]
    return list(dict.fromkeys([*first, *present]))


def categories(frame: pl.DataFrame) -> list[str]:
    """"all", the I2P labels in I2P order, any other label found, then "hard" when present."""
    found = frame.get_column("category").unique(maintain_order=True).to_list()
    others = [c for c in found if c not in I2P_CATEGORIES and c not in (ALL_CATEGORIES, HARD)]
    return [ALL_CATEGORIES, *I2P_CATEGORIES, *others, *([HARD] if HARD in found else [])]


def select(metrics: pl.DataFrame, profile: str, judge: str = ANY_JUDGE) -> pl.DataFrame:
    """The rows of one profile and judge ("any": the profile's verdict)."""
    return metrics.filter((pl.col("profile") == profile) & (pl.col("judge") == judge))


def rows_by_key(frame: pl.DataFrame, *keys: str) -> dict[tuple, dict[str, Any]]:
    """Rows as dicts keyed by the values of `keys`."""
    return {tuple(row[key] for key in keys): row for row in frame.iter_rows(named=True)}


def condition_label(model: str, mitigation: str) -> str:
    return f"{model} / {mitigation}"


def condition_keys(model: str, mitigation: str, **others: str) -> dict[str, str]:
    return {"model": model, "mitigation": mitigation, **others}


def _sortable(value: float | None) -> float | None:
    return None if is_missing(value) else float(value)


def ip_cell(row: dict[str, Any] | None) -> Cell:
    """IP in percent, its 95 % interval on a second line; "–" when the cell has no row (no prompts)."""
    if row is None:
        return Cell(MISSING)
    value = row["inappropriate_probability"]
    bounds = interval(row["ip_low"], row["ip_high"])
    return Cell(percent(value), (bounds,) if bounds and not is_missing(value) else (), _sortable(value))


def count_cell(value: int) -> Cell:
    return Cell(str(value), sort=float(value))


def overall_table(primary: pl.DataFrame, listed: Sequence[tuple[str, str]]) -> Table:
    """Per model x mitigation over all categories: counts, IP with its interval, EMI exact and Monte Carlo."""
    by_key = rows_by_key(primary, "model", "mitigation", "category")
    rows, keys = [], []
    for model, mitigation in ordered(primary, listed):
        row = by_key.get((model, mitigation, ALL_CATEGORIES))
        if row is None:
            continue
        keys.append(condition_keys(model, mitigation))
        rows.append(
            (
                model,
                mitigation,
                *(count_cell(row[key]) for key in ("n_prompts", "n_images", "n_unscored", "n_flagged")),
                ip_cell(row),
                Cell(emi_cell(row["emi_mean"], row["emi_std"]), sort=_sortable(row["emi_mean"])),
                Cell(emi_cell(row["emi_mc_mean"], row["emi_mc_std"]), sort=_sortable(row["emi_mc_mean"])),
            )
        )
    columns = (
        "model", "mitigation", "prompts", "images", "unscored", "flagged", "IP (%) [95 % CI]",
        "EMI (%) exact mean ± std", "EMI (%) Monte Carlo mean ± std",
    )
    return Table(columns, tuple(rows), labels=2, keys=tuple(keys))


def category_table(primary: pl.DataFrame, listed: Sequence[tuple[str, str]]) -> Table:
    """IP (%) with its interval; rows = model x mitigation, columns = categories."""
    by_key = rows_by_key(primary, "model", "mitigation", "category")
    pairs = ordered(primary, listed)
    groups = categories(primary)
    rows = tuple((*pair, *(ip_cell(by_key.get((*pair, category))) for category in groups)) for pair in pairs)
    return Table(("model", "mitigation", *groups), rows, labels=2, keys=tuple(condition_keys(*p) for p in pairs))


def paired_difference(row: dict[str, Any]) -> Cell:
    """Paired IP difference (mitigation − baseline) in points, its interval below."""
    bounds = interval(row["difference_low"], row["difference_high"], signed_points)
    return Cell(signed_points(row["ip_difference"]), (bounds,) if bounds else (), _sortable(row["ip_difference"]))


def difference_cell(row: dict[str, Any] | None) -> Cell:
    """The paired difference with its interval and Holm-adjusted p on lines below; "–" without a row."""
    if row is None:
        return Cell(MISSING)
    difference = paired_difference(row)
    return Cell(difference.text, (*difference.notes, f"p_holm {p_value(row['p_holm'])}"), difference.sort)


def comparison_table(
    comparisons: pl.DataFrame, profile: str, baseline: str | None, listed: Sequence[tuple[str, str]]
) -> Table | None:
    """Per mitigation (rows) and category (columns): the mitigation minus its model's
    baseline (paired), in points, with its interval and Holm-adjusted p; None when nothing
    was compared."""
    chosen = select(comparisons, profile)
    if chosen.is_empty():
        return None
    by_key = rows_by_key(chosen, "model", "mitigation", "category")
    pairs = ordered(chosen, listed)
    groups = categories(chosen)
    rows = tuple((*pair, *(difference_cell(by_key.get((*pair, category))) for category in groups)) for pair in pairs)
    columns = ("model", f"mitigation (− {baseline})", *groups)
    return Table(columns, rows, labels=2, keys=tuple(condition_keys(*p) for p in pairs))


def profile_table(metrics: pl.DataFrame, profiles: dict[str, Any], listed: Sequence[tuple[str, str]]) -> Table:
    """Every judge profile applied to the same scores, primary profile first: per profile,
    its verdict ("any") and, for a profile that reads several judges, each judge's part
    alone; per condition (rows) IP (%) [95 % CI] per category (columns), and the images the
    profile could not score."""
    groups = categories(metrics)
    by_key = rows_by_key(metrics, "profile", "judge", "model", "mitigation", "category")
    rows, keys = [], []
    for profile in profiles["profiles"]:
        name = profile["name"]
        chosen = metrics.filter(pl.col("profile") == name)
        judges = chosen.get_column("judge").unique(maintain_order=True).to_list()
        label = f"{name} (primary)" if name == profiles["primary"] else name
        for judge in sorted(judges, key=lambda judge: judge != ANY_JUDGE):
            judge_label = "verdict" if judge == ANY_JUDGE else f"{judge} alone"
            for model, mitigation in ordered(chosen.filter(pl.col("judge") == judge), listed):
                overall = by_key.get((name, judge, model, mitigation, ALL_CATEGORIES))
                cells = [ip_cell(by_key.get((name, judge, model, mitigation, category))) for category in groups]
                unscored = MISSING if overall is None else count_cell(overall["n_unscored"])
                rows.append((Cell(label, (judge_label,)), condition_label(model, mitigation), *cells, unscored))
                keys.append(condition_keys(model, mitigation, profile=name))
    columns = ("profile and judge", "condition", *groups, "unscored images")
    return Table(columns, tuple(rows), labels=2, keys=tuple(keys))


def alignment_table(
    alignment: pl.DataFrame, comparisons: pl.DataFrame, profile: str, baseline: str | None,
    listed: Sequence[tuple[str, str]],
) -> Table | None:
    """Per model x mitigation over all categories: CLIPScore mean ± std, and (when there is
    a baseline) the paired difference against the model's baseline with its interval;
    None when not measured."""
    overall = alignment.filter(pl.col("category") == ALL_CATEGORIES)
    if overall.is_empty():
        return None
    paired = rows_by_key(
        select(comparisons, profile).filter(pl.col("category") == ALL_CATEGORIES), "model", "mitigation"
    )
    by_key = rows_by_key(overall, "model", "mitigation")
    rows, keys = [], []
    for model, mitigation in ordered(overall, listed):
        row = by_key[(model, mitigation)]
        mean = NOT_AVAILABLE if is_missing(row["clip_score_mean"]) else f"{row['clip_score_mean']:.2f}"
        std = NOT_AVAILABLE if is_missing(row["clip_score_std"]) else f"{row['clip_score_std']:.2f}"
        compared = paired.get((model, mitigation))
        change = Cell(MISSING) if compared is None else alignment_difference(compared)
        cells = (
            model, mitigation, count_cell(row["n_images"]), count_cell(row["n_unscored"]),
            Cell(f"{mean} ± {std}", sort=_sortable(row["clip_score_mean"])),
        )
        rows.append(cells if baseline is None else (*cells, change))
        keys.append(condition_keys(model, mitigation))
    columns = ("model", "mitigation", "images", "unscored", "CLIPScore mean ± std")
    if baseline is not None:
        columns += (f"paired change against {baseline}",)
    return Table(columns, tuple(rows), labels=2, keys=tuple(keys))


def fid_table(fid: pl.DataFrame, listed: Sequence[tuple[str, str]]) -> Table:
    """Per model x mitigation: images, reference images and FID."""
    by_key = rows_by_key(fid, "model", "mitigation")
    rows, keys = [], []
    for model, mitigation in ordered(fid, listed):
        row = by_key[(model, mitigation)]
        cells = (model, mitigation, count_cell(row["images"]), count_cell(row["reference_images"]),
                 Cell(f"{row['fid']:.2f}", sort=_sortable(row["fid"])))  # fmt: skip
        rows.append(cells)
        keys.append(condition_keys(model, mitigation))
    return Table(("model", "mitigation", "images", "reference images", "FID"), tuple(rows), labels=2, keys=tuple(keys))


def alignment_difference(row: dict[str, Any]) -> Cell:
    """CLIPScore difference (mitigation − baseline), its interval below; "n/a" without CLIPScore."""
    value = row["alignment_difference"]
    bounds = interval(row["alignment_low"], row["alignment_high"], clip_points)
    return Cell(clip_points(value), (bounds,) if bounds and not is_missing(value) else (), _sortable(value))


def degenerate_table(counts: list[dict[str, Any]], listed: Sequence[tuple[str, str]]) -> Table:
    """Per model x mitigation: images made, how many are degenerate, and why.

    `counts` rows hold model, mitigation, architecture, images, degenerate and reasons (a
    list of {"degenerate": reason, "count": n}), as metrics.degenerate.degenerate_counts
    gives them; listed conditions first, in the configuration's order.
    """
    position = {pair: index for index, pair in enumerate(listed)}
    chosen = sorted(counts, key=lambda row: position.get((row["model"], row["mitigation"]), len(position)))
    rows = tuple(
        (
            row["model"],
            row["architecture"],
            row["mitigation"],
            count_cell(row["images"]),
            count_cell(row["degenerate"]),
            "; ".join(f"{reason['degenerate']}: {reason['count']}" for reason in row["reasons"]) or MISSING,
        )
        for row in chosen
    )
    columns = ("model", "architecture", "mitigation", "images", "degenerate", "reasons")
    return Table(columns, rows, labels=3, keys=tuple(condition_keys(r["model"], r["mitigation"]) for r in chosen))


def listed_files(files: dict[str, str]) -> Cell:
    """A file -> sha256 mapping as a count, the list itself collapsed."""
    return Cell(f"{len(files)} file{'s' if len(files) != 1 else ''}", collapsed=file_lines(files))


def file_lines(files: dict[str, str]) -> str:
    return "\n".join(f"{file}: {sha}" for file, sha in files.items())


def judges_table(judges: dict[str, dict[str, Any]]) -> Table:
    """Each judge that ran: what it is, where its weights come from, whether they are demo
    weights, and the sha256 of every file its record stands for (collapsed)."""
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
        weights = "demo weights" if judge["demo"] else "real"
        rows.append((name, JUDGES[name].description, weights, origin, listed_files(judge["files"])))
    return Table(("judge", "what", "weights", "from", "files (sha256)"), tuple(rows))


def pretty(value: Any) -> str:
    """Indented JSON for nested provenance values; non-JSON values via str()."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def scalar(value: Any) -> str:
    """A provenance value as text: strings as they are, "–" for None, anything else as JSON."""
    if value is None:
        return MISSING
    return value if isinstance(value, str) else pretty(value)


OVERRIDDEN_MODULES = {component.record_key: component.label for component in COMPONENTS.values()}


def record_cell(key: str, value: Any) -> CellLike:
    """A model record's value: scalars as text; a file list as its count, collapsed; a
    weight override as what it replaces or adapts, its record collapsed; any other nested
    value as its size, its JSON collapsed."""
    if key == "files" and isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return listed_files(value)
    if key in OVERRIDDEN_MODULES and isinstance(value, dict):
        module = OVERRIDDEN_MODULES[key]
        share = 100 * value.get("parameter_share", 0)
        extent = (
            f"the whole {module}" if value.get("whole")
            else f"{value.get('tensors')} tensors, {share:.2f} % of the {module}'s parameters"
        )
        return Cell(f"{value.get('source')} weights: {extent}", collapsed=pretty(value))
    if key == "lora" and isinstance(value, list) and all(isinstance(lora, dict) for lora in value):
        adapted = "; ".join(
            f"{lora.get('source')} LoRA at scale {lora.get('scale')}: "
            + ", ".join(f"{count} {module} layers" for module, count in (lora.get("layers") or {}).items())
            for lora in value
        )
        return Cell(adapted, collapsed=pretty(value))
    if isinstance(value, dict | list):
        return Cell(f"{len(value)} entr{'y' if len(value) == 1 else 'ies'}", collapsed=pretty(value))
    return scalar(value)


def model_records(models: dict[str, dict[str, Any]]) -> Table:
    """Each model's record (where its weights come from), the usual keys first."""
    keys = list(MODEL_RECORD_KEYS)
    for record in models.values():
        keys += [key for key in record if key not in keys]
    rows = tuple((name, *(record_cell(key, record.get(key)) for key in keys)) for name, record in models.items())
    return Table(("model", *keys), rows, keys=tuple({"model": name} for name in models))
