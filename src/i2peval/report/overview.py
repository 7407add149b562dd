"""The report's first table, the paper's main result: inappropriate probability per model
(rows) and mitigation (columns), under the primary profile over all categories.

Each cell holds the IP, and for a mitigation its paired difference against the model's
baseline in points with the relative reduction; "n.s." marks a difference whose
Holm-adjusted p is 0.05 or more. The intervals are in the cell's tooltip and in the
tables further down; the cell is shaded by its IP. Models and mitigations are in the
configuration's order; a configured condition without a measurement shows "–".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from i2peval.report.formatting import (
    MISSING,
    SIGNIFICANCE,
    interval,
    is_missing,
    p_value,
    percent,
    relative,
    signed_points,
)
from i2peval.report.tables import ALL_CATEGORIES, Table, condition_keys, rows_by_key, select


@dataclass(frozen=True)
class OverviewCell:
    """One condition: IP, the change against the baseline, and how to draw it."""

    mitigation: str
    ip: str
    change: str
    not_significant: bool
    title: str
    shade: str


@dataclass(frozen=True)
class Overview:
    """Rows of (model, its cells in `mitigations` order), and the same as a plain table."""

    mitigations: tuple[str, ...]
    rows: tuple[tuple[str, tuple[OverviewCell, ...]], ...]
    table: Table


def shade(fraction: float | None) -> str:
    """A background from white (IP 0) to a clear red (IP 1) that keeps dark text readable."""
    if is_missing(fraction):
        return "transparent"
    return f"hsl(4 80% {97 - 40 * min(max(fraction, 0.0), 1.0):.0f}%)"


def overview(
    metrics: pl.DataFrame,
    comparisons: pl.DataFrame,
    profile: str,
    baseline: str | None,
    listed: Sequence[tuple[str, str]],
) -> Overview:
    """The model x mitigation table of `profile`'s verdict over all categories; `listed`
    holds every configured condition in the configuration's order."""
    measured = rows_by_key(select(metrics, profile).filter(pl.col("category") == ALL_CATEGORIES), "model", "mitigation")
    paired = rows_by_key(
        select(comparisons, profile).filter(pl.col("category") == ALL_CATEGORIES), "model", "mitigation"
    )
    pairs = list(dict.fromkeys([*listed, *measured]))
    models = list(dict.fromkeys(model for model, _ in pairs))
    mitigations = list(dict.fromkeys(mitigation for _, mitigation in pairs))
    rows, plain, keys = [], [], []
    for model in models:
        cells = []
        for mitigation in mitigations:
            row, compared = measured.get((model, mitigation)), paired.get((model, mitigation))
            cells.append(_cell(model, mitigation, row, compared, mitigation == baseline))
            if (model, mitigation) in pairs:
                plain.append(_plain_row(model, mitigation, row, compared, mitigation == baseline))
                keys.append(condition_keys(model, mitigation))
        rows.append((model, tuple(cells)))
    columns = ("model", "mitigation", "IP (%)", "IP 95 % CI", "difference (pp)", "difference 95 % CI",
               "relative reduction", "Holm p")
    return Overview(tuple(mitigations), tuple(rows), Table(columns, tuple(plain), labels=2, keys=tuple(keys)))


def _cell(model: str, mitigation: str, row: dict | None, compared: dict | None, is_baseline: bool) -> OverviewCell:
    name = f"{model} / {mitigation}"
    if row is None:
        return OverviewCell(mitigation, MISSING, "", False, f"{name}: not measured", shade(None))
    ip = row["inappropriate_probability"]
    title = f"{name}: IP {percent(ip)} % {interval(row['ip_low'], row['ip_high'])}".rstrip()
    if is_baseline:
        change = "baseline"
    elif compared is None:
        change = "not compared"
    else:
        change = f"{signed_points(compared['ip_difference'])} pp · {relative(compared['relative_reduction'])}"
        difference_interval = interval(compared["difference_low"], compared["difference_high"], signed_points)
        title += (
            f"; difference {signed_points(compared['ip_difference'])} pp {difference_interval}".rstrip()
            + f", Holm p {p_value(compared['p_holm'])}, {compared['n_pairs']} image pairs"
        )
    not_significant = compared is not None and not is_baseline and not _significant(compared["p_holm"])
    return OverviewCell(mitigation, percent(ip), change, not_significant, title, shade(ip))


def _significant(p_holm: float | None) -> bool:
    return not is_missing(p_holm) and p_holm < SIGNIFICANCE


def _plain_row(model: str, mitigation: str, row: dict | None, compared: dict | None, is_baseline: bool) -> tuple:
    if row is None:
        return (model, mitigation, "not measured", *[MISSING] * 5)
    ip = (percent(row["inappropriate_probability"]), interval(row["ip_low"], row["ip_high"]) or MISSING)
    if is_baseline or compared is None:
        return (model, mitigation, *ip, *["baseline" if is_baseline else "not compared"] * 4)
    return (
        model,
        mitigation,
        *ip,
        signed_points(compared["ip_difference"]),
        interval(compared["difference_low"], compared["difference_high"], signed_points) or MISSING,
        relative(compared["relative_reduction"]),
        p_value(compared["p_holm"]),
    )
