"""Each mitigation against its model's baseline, paired on images (same prompt, same seed).

The baseline is the condition whose mitigation kind is none (mitigations.baseline_mitigation);
without one there is nothing to compare and the table is empty. Per profile x judge x model x
mitigation x category, over the images scored under both conditions:

- IP of each and their difference, with a paired bootstrap interval over prompts (the same
  resampling weights as the IP intervals, applied to both conditions at once);
- the relative reduction 1 - IP(mitigation) / IP(baseline) (null when the baseline's IP is 0);
- McNemar's exact test on the discordant image pairs, and Holm's adjustment across the
  models and mitigations of each profile x judge x category;
- with CLIPScore, the paired mean difference of prompt alignment and its interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from i2peval.metrics.prompt_sets import VERDICTS, per_judge
from i2peval.metrics.rates import (
    BootstrapSettings,
    category_matrices,
    category_weights,
    cell_columns,
    cell_counts,
    resampled,
)
from i2peval.metrics.statistics import holm, mcnemar_exact, percentile_interval, resampled_ratios
from i2peval.schemas import COMPARISONS, measured_columns

KEYS = ["profile", "judge", "model", "mitigation", "category"]
PAIR_KEYS = ["profile", "model", "prompt_id", "image_index"]
FAMILY = ["profile", "judge", "category"]


def _paired_prompt_counts(
    flags: pl.LazyFrame, baseline: str, profile_judges: Mapping[str, Sequence[str]]
) -> pl.LazyFrame:
    """profile, judge, model, mitigation, prompt_id, n_pairs, baseline_flagged,
    mitigation_flagged, only_baseline, only_mitigation."""
    base = flags.filter(pl.col("mitigation") == baseline).select(
        *PAIR_KEYS, *[pl.col(column).alias(f"{column}:base") for column in VERDICTS]
    )
    pairs = flags.filter(pl.col("mitigation") != baseline).join(base, on=PAIR_KEYS, how="inner")
    sums = {}
    for column in VERDICTS:
        mine, theirs = pl.col(column), pl.col(f"{column}:base")
        paired = mine.is_not_null() & theirs.is_not_null()
        sums[f"n_pairs:{column}"] = paired.sum()
        sums[f"baseline_flagged:{column}"] = (paired & theirs).sum()
        sums[f"mitigation_flagged:{column}"] = (paired & mine).sum()
        sums[f"only_baseline:{column}"] = (paired & theirs & ~mine).sum()
        sums[f"only_mitigation:{column}"] = (paired & mine & ~theirs).sum()
    wide = pairs.group_by("profile", "model", "mitigation", "prompt_id").agg(**sums)
    names = ["n_pairs", "baseline_flagged", "mitigation_flagged", "only_baseline", "only_mitigation"]
    return per_judge(wide, profile_judges, ["model", "mitigation", "prompt_id"], names)


def _alignment(
    clip_scores: pl.LazyFrame, baseline: str, prompts: pl.LazyFrame, bootstrap: BootstrapSettings
) -> pl.DataFrame:
    """model, mitigation, category, alignment_baseline, alignment_mitigation,
    alignment_difference, alignment_low, alignment_high: CLIPScore on image pairs both scored."""
    keys = ["model", "prompt_id", "image_index"]
    condition = ["model", "mitigation"]
    base = clip_scores.filter(pl.col("mitigation") == baseline).select(*keys, base=pl.col("clip_score"))
    # float sums add values in sorted order: the numbers do not depend on row order
    per_prompt = (
        clip_scores.filter(pl.col("mitigation") != baseline)
        .join(base, on=keys, how="inner")
        .filter(pl.col("clip_score").is_not_null() & pl.col("base").is_not_null())
        .with_columns(pl.col("clip_score", "base").cast(pl.Float64))
        .group_by(*condition, "prompt_id")
        .agg(pairs=pl.len(), base_sum=pl.col("base").sort().sum(), mitigation_sum=pl.col("clip_score").sort().sum())
        .collect()
    )
    table = cell_counts(per_prompt, prompts, condition)
    frames = []
    for category, (pairs, base_sum, mitigation_sum) in category_matrices(
        table, ["pairs", "base_sum", "mitigation_sum"], np.float64
    ):
        weights = category_weights(category, table.sizes[category], bootstrap)
        low, high = percentile_interval(resampled_ratios(weights, mitigation_sum - base_sum, pairs))
        count = pairs.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            baseline_mean, mitigation_mean = base_sum.sum(axis=0) / count, mitigation_sum.sum(axis=0) / count
        frames.append(
            cell_columns(
                table,
                category,
                present=count > 0,
                alignment_baseline=baseline_mean,
                alignment_mitigation=mitigation_mean,
                alignment_difference=mitigation_mean - baseline_mean,
                alignment_low=low,
                alignment_high=high,
            )
        )
    if not frames:
        return pl.DataFrame(schema={"model": pl.String, "mitigation": pl.String, "category": pl.String})
    return pl.concat(frames).filter("present").drop("present").join(table.cells, on="cell").drop("cell")


def compute_comparisons(
    flags: pl.LazyFrame,
    prompts: pl.LazyFrame,
    profile_judges: Mapping[str, Sequence[str]],
    baseline: str | None,
    bootstrap: BootstrapSettings,
    clip_scores: pl.LazyFrame | None = None,
) -> pl.DataFrame:
    """The COMPARISONS table from IMAGE_FLAGS rows (degenerate-image policy applied).

    `clip_scores` (model, mitigation, prompt_id, image_index, clip_score; null when
    unscored) adds the alignment columns.
    """
    schema = pl.from_arrow(COMPARISONS.empty_table()).select(measured_columns(COMPARISONS)).schema
    if baseline is None:
        return pl.DataFrame(schema=schema)
    per_prompt = _paired_prompt_counts(flags, baseline, profile_judges).filter(pl.col("n_pairs") > 0).collect()
    table = cell_counts(per_prompt, prompts)
    sums = table.counts.group_by("cell", "category").agg(
        n_prompts=pl.len(),
        n_pairs=pl.col("n_pairs").sum(),
        baseline_flagged=pl.col("baseline_flagged").sum(),
        mitigation_flagged=pl.col("mitigation_flagged").sum(),
        only_baseline=pl.col("only_baseline").sum(),
        only_mitigation=pl.col("only_mitigation").sum(),
    ).with_columns(
        ip_baseline=pl.col("baseline_flagged") / pl.col("n_pairs"),
        ip_mitigation=pl.col("mitigation_flagged") / pl.col("n_pairs"),
    ).with_columns(
        ip_difference=pl.col("ip_mitigation") - pl.col("ip_baseline"),
        relative_reduction=pl.when(pl.col("ip_baseline") > 0).then(1 - pl.col("ip_mitigation") / pl.col("ip_baseline")),
    )
    sums = sums.with_columns(
        p_value=pl.Series(mcnemar_exact(sums["only_baseline"].to_numpy(), sums["only_mitigation"].to_numpy()))
    )
    intervals = [
        cell_columns(table, category, difference_low=low, difference_high=high)
        for category, weights, (pairs, base_flagged, mitigation_flagged) in resampled(
            table, ["n_pairs", "baseline_flagged", "mitigation_flagged"], bootstrap
        )
        for low, high in [percentile_interval(resampled_ratios(weights, mitigation_flagged - base_flagged, pairs))]
    ]
    if intervals:
        sums = sums.join(pl.concat(intervals), on=["cell", "category"], how="left")
    result = sums.join(table.cells, on="cell").drop("cell").sort(KEYS)
    p_holm = np.full(result.height, np.nan)
    families = result.with_row_index("row").group_by(FAMILY, maintain_order=True).agg("row", "p_value")
    for rows, p_values in zip(families["row"], families["p_value"]):
        p_holm[rows.to_numpy()] = holm(p_values.to_numpy())
    result = result.with_columns(p_holm=pl.Series(p_holm))
    if clip_scores is not None:
        result = result.join(
            _alignment(clip_scores, baseline, prompts, bootstrap), on=["model", "mitigation", "category"], how="left"
        )
    missing = {
        name: pl.lit(None, dtype)
        for name, dtype in schema.items()
        if name not in result.columns and name != "baseline"
    }
    return (
        result.with_columns(baseline=pl.lit(baseline), **missing)
        .with_columns(pl.col(pl.Float64, pl.Float32).fill_nan(None))
        .select(measured_columns(COMPARISONS))
        .cast(dict(schema))
        .sort(KEYS)
    )
