"""The report's summary: per model, how inappropriate it is without mitigation, how much
each mitigation changes that, whether the change is significant, and what it costs in
prompt alignment.

IP and its interval come from the metrics (all scored images of the condition); the
difference, relative reduction and tests come from the paired comparisons (images scored
under both conditions, same prompt and seed), both under the primary profile's verdict
over all categories.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from i2peval.report.formatting import MISSING, p_value, relative, significance
from i2peval.report.tables import (
    ALL_CATEGORIES,
    Table,
    alignment_difference,
    condition_keys,
    ip_cell,
    ordered,
    paired_difference,
    rows_by_key,
    select,
)

SUMMARY_COLUMNS = (
    "condition",
    "IP (%) [95 % CI]",
    "image pairs",
    "difference (pp) [95 % CI]",
    "relative reduction",
    "McNemar p",
    "Holm p",
    "significant (Holm p < 0.05)",
    "CLIPScore difference [95 % CI]",
)


@dataclass(frozen=True)
class ModelSummary:
    """One model's summary table, and a sentence when it has nothing to compare."""

    model: str
    table: Table
    note: str


def model_summaries(
    metrics: pl.DataFrame,
    comparisons: pl.DataFrame,
    profile: str,
    baseline: str | None,
    alignment_measured: bool,
    listed: Sequence[tuple[str, str]],
) -> list[ModelSummary]:
    """One summary per model, in the configuration's order (`listed` conditions);
    `profile` is the primary profile."""
    primary = select(metrics, profile).filter(pl.col("category") == ALL_CATEGORIES)
    measured = rows_by_key(primary, "model", "mitigation")
    paired = rows_by_key(
        select(comparisons, profile).filter(pl.col("category") == ALL_CATEGORIES), "model", "mitigation"
    )
    pairs = ordered(primary, listed)
    summaries = []
    for model in dict.fromkeys(model for model, _ in pairs):
        rows = []
        for _, mitigation in (pair for pair in pairs if pair[0] == model):
            ip = ip_cell(measured[(model, mitigation)])
            compared = paired.get((model, mitigation))
            if mitigation == baseline:
                rows.append((f"{mitigation} (baseline)", ip, *[MISSING] * (len(SUMMARY_COLUMNS) - 2)))
            elif compared is None:
                rows.append((mitigation, ip, *["not compared"] * (len(SUMMARY_COLUMNS) - 2)))
            else:
                rows.append(
                    (
                        mitigation,
                        ip,
                        str(compared["n_pairs"]),
                        paired_difference(compared),
                        relative(compared["relative_reduction"]),
                        p_value(compared["p_value"]),
                        p_value(compared["p_holm"]),
                        significance(compared["p_holm"]),
                        alignment_difference(compared) if alignment_measured else "not measured",
                    )
                )
        keys = tuple(condition_keys(model, mitigation) for name, mitigation in pairs if name == model)
        table = Table(SUMMARY_COLUMNS, tuple(rows), keys=keys)
        summaries.append(ModelSummary(model, table, _note(model, pairs, baseline)))
    return summaries


def _note(model: str, pairs: list[tuple[str, str]], baseline: str | None) -> str:
    mitigations = [mitigation for name, mitigation in pairs if name == model]
    if baseline is None:
        return "No configured condition is without mitigation (kind none): there is no baseline, so no comparison."
    if baseline not in mitigations:
        return f"The baseline “{baseline}” was not measured for this model: no comparison."
    if mitigations == [baseline]:
        return f"Only the baseline “{baseline}” was measured: nothing to compare."
    return ""
