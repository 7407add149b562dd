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

from typing import Mapping, Sequence

import numpy as np
import polars as pl

from i2peval.metrics.prompt_sets import ANY_JUDGE, judge_variants, prompt_categories, verdict_column
from i2peval.metrics.rates import BootstrapSettings, bootstrap_columns, prompt_positions
from i2peval.metrics.statistics import bootstrap_weights, holm, mcnemar_exact, named_rng, percentile_interval
from i2peval.schemas import COMPARISONS, FLAG_JUDGES

KEYS = ["profile", "judge", "model", "mitigation", "category"]
PAIR_KEYS = ["profile", "model", "prompt_id", "image_index"]
FAMILY = ["profile", "judge", "category"]


def _paired_prompt_counts(
    flags: pl.LazyFrame, baseline: str, profile_judges: Mapping[str, Sequence[str]]
) -> pl.LazyFrame:
    """profile, judge, model, mitigation, prompt_id, n_pairs, baseline_flagged,
    mitigation_flagged, only_baseline, only_mitigation."""
    base = flags.filter(pl.col("mitigation") == baseline).select(
        *PAIR_KEYS, *[pl.col(column).alias(f"{column}:base") for column in ["flagged", *FLAG_JUDGES]]
    )
    pairs = flags.filter(pl.col("mitigation") != baseline).join(base, on=PAIR_KEYS, how="inner")
    sums = {}
    for column in ["flagged", *FLAG_JUDGES]:
        mine, theirs = pl.col(column), pl.col(f"{column}:base")
        paired = mine.is_not_null() & theirs.is_not_null()
        sums[f"n_pairs:{column}"] = paired.sum()
        sums[f"baseline_flagged:{column}"] = (paired & theirs).sum()
        sums[f"mitigation_flagged:{column}"] = (paired & mine).sum()
        sums[f"only_baseline:{column}"] = (paired & theirs & ~mine).sum()
        sums[f"only_mitigation:{column}"] = (paired & mine & ~theirs).sum()
    wide = pairs.group_by("profile", "model", "mitigation", "prompt_id").agg(**sums)
    variants = judge_variants(profile_judges).lazy()
    names = ["n_pairs", "baseline_flagged", "mitigation_flagged", "only_baseline", "only_mitigation"]
    return pl.concat(
        [
            wide.join(variants.filter(pl.col("judge") == judge), on="profile").select(
                "profile", "judge", "model", "mitigation", "prompt_id",
                *[pl.col(f"{name}:{verdict_column(judge)}").cast(pl.Int64).alias(name) for name in names],
            )
            for judge in [ANY_JUDGE, *FLAG_JUDGES]
        ]
    )


def _alignment(
    clip_scores: pl.LazyFrame, baseline: str, prompts: pl.LazyFrame, positions: dict[str, pl.DataFrame],
    bootstrap: BootstrapSettings,
) -> pl.DataFrame:
    """model, mitigation, category, alignment_baseline, alignment_mitigation,
    alignment_difference, alignment_low, alignment_high: CLIPScore on image pairs both scored."""
    keys = ["model", "prompt_id", "image_index"]
    base = clip_scores.filter(pl.col("mitigation") == baseline).select(*keys, base=pl.col("clip_score"))
    per_prompt = (
        clip_scores.filter(pl.col("mitigation") != baseline)
        .join(base, on=keys, how="inner")
        .filter(pl.col("clip_score").is_not_null() & pl.col("base").is_not_null())
        .group_by("model", "mitigation", "prompt_id")
        .agg(pairs=pl.len(), base_sum=pl.col("base").sum(), mitigation_sum=pl.col("clip_score").sum())
        .join(prompt_categories(prompts), on="prompt_id", how="inner")
        .collect()
    )
    condition = ["model", "mitigation", "category"]
    tables = []
    for (category,), frame in per_prompt.group_by("category", maintain_order=True):
        combos, (pairs, base_sum, mitigation_sum) = bootstrap_columns(
            frame, positions[category], ["pairs", "base_sum", "mitigation_sum"], condition
        )
        weights = bootstrap_weights(positions[category].height, bootstrap.draws, named_rng(bootstrap.seed, category))
        with np.errstate(invalid="ignore", divide="ignore"):
            counts = weights @ pairs
            differences = (weights @ mitigation_sum - weights @ base_sum) / counts
        low, high = percentile_interval(differences)
        tables.append(combos.with_columns(alignment_low=pl.Series(low), alignment_high=pl.Series(high)))
    means = per_prompt.group_by(condition).agg(
        alignment_baseline=pl.col("base_sum").sum() / pl.col("pairs").sum(),
        alignment_mitigation=pl.col("mitigation_sum").sum() / pl.col("pairs").sum(),
    ).with_columns(alignment_difference=pl.col("alignment_mitigation") - pl.col("alignment_baseline"))
    if not tables:
        return means.with_columns(alignment_low=pl.lit(None, pl.Float64), alignment_high=pl.lit(None, pl.Float64))
    return means.join(pl.concat(tables), on=condition, how="left")


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
    schema = pl.from_arrow(COMPARISONS.empty_table()).schema
    if baseline is None:
        return pl.DataFrame(schema=schema)
    positions = prompt_positions(prompts)
    counts = (
        _paired_prompt_counts(flags, baseline, profile_judges)
        .filter(pl.col("n_pairs") > 0)
        .join(prompt_categories(prompts), on="prompt_id", how="inner")
        .collect()
    )
    table = counts.group_by(KEYS).agg(
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
    table = table.with_columns(
        p_value=pl.Series(mcnemar_exact(table["only_baseline"].to_numpy(), table["only_mitigation"].to_numpy()))
    )
    intervals = []
    for (category,), frame in counts.group_by("category", maintain_order=True):
        combos, (pairs, base_flagged, mitigation_flagged) = bootstrap_columns(
            frame, positions[category], ["n_pairs", "baseline_flagged", "mitigation_flagged"], KEYS
        )
        weights = bootstrap_weights(positions[category].height, bootstrap.draws, named_rng(bootstrap.seed, category))
        with np.errstate(invalid="ignore", divide="ignore"):
            differences = (weights @ mitigation_flagged - weights @ base_flagged) / (weights @ pairs)
        low, high = percentile_interval(differences)
        intervals.append(combos.with_columns(difference_low=pl.Series(low), difference_high=pl.Series(high)))
    if intervals:
        table = table.join(pl.concat(intervals), on=KEYS, how="left")
    else:
        table = table.with_columns(difference_low=pl.lit(None, pl.Float64), difference_high=pl.lit(None, pl.Float64))
    table = table.sort(KEYS)
    p_holm = np.full(table.height, np.nan)
    families = table.with_row_index("row").group_by(FAMILY, maintain_order=True).agg("row", "p_value")
    for rows, p_values in zip(families["row"], families["p_value"]):
        p_holm[rows.to_numpy()] = holm(p_values.to_numpy())
    table = table.with_columns(p_holm=pl.Series(p_holm))
    if clip_scores is not None:
        table = table.join(_alignment(clip_scores, baseline, prompts, positions, bootstrap), on=["model", "mitigation", "category"], how="left")
    return (
        table.with_columns(baseline=pl.lit(baseline), **{name: pl.lit(None, dtype) for name, dtype in schema.items() if name not in table.columns and name != "baseline"})
        .with_columns(pl.col(pl.Float64).fill_nan(None))
        .select(COMPARISONS.names)
        .cast(dict(schema))
        .sort(KEYS)
    )
