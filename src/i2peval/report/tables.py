"""The report's tables, as header cells and rows of formatted text.

Metrics come per profile x judge x model x mitigation x category (schemas.METRICS); the
tables below show the primary profile's verdict (judge "any") unless they say otherwise.
Conditions are listed model by model, each model's baseline (the mitigation of kind none)
first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import polars as pl

from i2peval.judges.registry import JUDGES
from i2peval.metrics.prompt_sets import ALL_CATEGORIES, ANY_JUDGE, HARD
from i2peval.prompts.i2p import I2P_CATEGORIES
from i2peval.report.formatting import (
    MISSING,
    NOT_AVAILABLE,
    clip_points,
    emi_cell,
    is_missing,
    p_value,
    signed_points,
    with_interval,
)

# Keys shown first, in this order, in the model provenance table; others follow.
MODEL_RECORD_KEYS = ("source", "architecture", "repo_id", "revision", "commit")


@dataclass(frozen=True)
class Table:
    """Pre-formatted table: header cells and rows of cell text."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def conditions(frame: pl.DataFrame, baseline: str | None) -> list[tuple[str, str]]:
    """(model, mitigation) pairs: models in order of appearance, the `baseline` first within a model."""
    seen = list(dict.fromkeys(frame.select("model", "mitigation").iter_rows()))
    models = list(dict.fromkeys(model for model, _ in seen))
    return sorted(seen, key=lambda pair: (models.index(pair[0]), pair[1] != baseline, seen.index(pair)))


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


def ip_cell(row: dict[str, Any] | None) -> str:
    """IP with its 95 % interval in percent; "–" when the cell has no row (no prompts)."""
    if row is None:
        return MISSING
    return with_interval(row["inappropriate_probability"], row["ip_low"], row["ip_high"])


def overall_table(primary: pl.DataFrame, baseline: str | None) -> Table:
    """Per model x mitigation over all categories: counts, IP with its interval, EMI exact and Monte Carlo."""
    by_key = rows_by_key(primary, "model", "mitigation", "category")
    rows = []
    for model, mitigation in conditions(primary, baseline):
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
                ip_cell(row),
                emi_cell(row["emi_mean"], row["emi_std"]),
                emi_cell(row["emi_mc_mean"], row["emi_mc_std"]),
            )
        )
    columns = (
        "model", "mitigation", "prompts", "images", "unscored", "flagged", "IP (%) [95 % CI]",
        "EMI (%) exact mean ± std", "EMI (%) Monte Carlo mean ± std",
    )
    return Table(columns, tuple(rows))


def category_table(primary: pl.DataFrame, baseline: str | None) -> Table:
    """IP (%) with its interval; rows = categories, columns = model x mitigation."""
    by_key = rows_by_key(primary, "model", "mitigation", "category")
    pairs = conditions(primary, baseline)
    rows = tuple(
        (category, *(ip_cell(by_key.get((*pair, category))) for pair in pairs)) for category in categories(primary)
    )
    return Table(("category", *(condition_label(*pair) for pair in pairs)), rows)


def difference_cell(row: dict[str, Any] | None) -> str:
    """Paired IP difference in points with its interval and Holm-adjusted p; "–" without a row."""
    if row is None:
        return MISSING
    difference = with_interval(row["ip_difference"], row["difference_low"], row["difference_high"], signed_points)
    return f"{difference} · p_holm {p_value(row['p_holm'])}"


def comparison_table(comparisons: pl.DataFrame, profile: str, baseline: str | None) -> Table | None:
    """Per category: each mitigation minus its model's baseline (paired), in points, with its
    interval and Holm-adjusted p; None when nothing was compared."""
    chosen = select(comparisons, profile)
    if chosen.is_empty():
        return None
    by_key = rows_by_key(chosen, "model", "mitigation", "category")
    pairs = conditions(chosen, baseline)
    rows = tuple(
        (category, *(difference_cell(by_key.get((*pair, category))) for pair in pairs))
        for category in categories(chosen)
    )
    return Table(("category", *(f"{model}: {mitigation} − {baseline}" for model, mitigation in pairs)), rows)


def profile_table(metrics: pl.DataFrame, profiles: dict[str, Any], baseline: str | None) -> Table:
    """One row per judge profile and judge ("any" = the profile's verdict, then each judge's
    part alone), primary profile first: its rule, IP (%) [95 % CI] of every condition over
    all categories, and the images it could not score."""
    overall = metrics.filter(pl.col("category") == ALL_CATEGORIES)
    pairs = conditions(overall, baseline)
    by_key = rows_by_key(overall, "profile", "judge", "model", "mitigation")
    rows = []
    for profile in profiles["profiles"]:
        name = profile["name"]
        judges = overall.filter(pl.col("profile") == name).get_column("judge").unique(maintain_order=True).to_list()
        for judge in sorted(judges, key=lambda judge: judge != ANY_JUDGE):
            cells = [ip_cell(by_key.get((name, judge, *pair))) for pair in pairs]
            unscored = sum(
                by_key[(name, judge, *pair)]["n_unscored"] for pair in pairs if (name, judge, *pair) in by_key
            )
            label = f"{name} (primary)" if name == profiles["primary"] else name
            judge_label = "any (the profile's verdict)" if judge == ANY_JUDGE else f"{judge} alone"
            rows.append((label, profile["rule"], judge_label, *cells, str(unscored)))
    columns = (
        "profile",
        "flags an image when",
        "judge",
        *(condition_label(*pair) for pair in pairs),
        "unscored images",
    )
    return Table(columns, tuple(rows))


def alignment_table(
    alignment: pl.DataFrame, comparisons: pl.DataFrame, profile: str, baseline: str | None
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
    rows = []
    for model, mitigation in conditions(overall, baseline):
        row = by_key[(model, mitigation)]
        mean = NOT_AVAILABLE if is_missing(row["clip_score_mean"]) else f"{row['clip_score_mean']:.2f}"
        std = NOT_AVAILABLE if is_missing(row["clip_score_std"]) else f"{row['clip_score_std']:.2f}"
        compared = paired.get((model, mitigation))
        change = MISSING if compared is None else alignment_difference(compared)
        cells = (model, mitigation, str(row["n_images"]), str(row["n_unscored"]), f"{mean} ± {std}")
        rows.append(cells if baseline is None else (*cells, change))
    columns = ("model", "mitigation", "images", "unscored", "CLIPScore mean ± std")
    if baseline is not None:
        columns += (f"paired change against {baseline}",)
    return Table(columns, tuple(rows))


def alignment_difference(row: dict[str, Any]) -> str:
    """CLIPScore difference (mitigation − baseline) with its interval; "n/a" without CLIPScore."""
    return with_interval(row["alignment_difference"], row["alignment_low"], row["alignment_high"], clip_points)


def degenerate_table(counts: list[dict[str, Any]]) -> Table:
    """Per model x mitigation: images made, how many are degenerate, and why.

    `counts` rows hold model, mitigation, architecture, images, degenerate and reasons (a
    list of {"degenerate": reason, "count": n}), as metrics.degenerate.degenerate_counts
    gives them.
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
        rows.append((name, JUDGES[name].description, "demo weights" if judge["demo"] else "real", origin, files))
    return Table(("judge", "what", "weights", "from", "files (sha256)"), tuple(rows))


def pretty(value: Any) -> str:
    """Indented JSON for nested provenance values; non-JSON values via str()."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def scalar(value: Any) -> str:
    """A provenance value as text: strings as they are, "–" for None, anything else as JSON."""
    if value is None:
        return MISSING
    return value if isinstance(value, str) else pretty(value)


def model_records(models: dict[str, dict[str, Any]]) -> Table:
    """Each model's record (where its weights come from), the usual keys first."""
    keys = list(MODEL_RECORD_KEYS)
    for record in models.values():
        keys += [key for key in record if key not in keys]
    rows = tuple((name, *(scalar(record.get(key)) for key in keys)) for name, record in models.items())
    return Table(("model", *keys), rows)
