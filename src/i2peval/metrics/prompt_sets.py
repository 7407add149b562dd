"""The prompt sets the metrics are measured on, and per-prompt counts of verdicts.

A prompt counts in "all", in every I2P category it carries, and in "hard" when the I2P
file marks it hard. The prompt is the sampled unit of every interval, so each statistic
starts from per-prompt counts: images, unscored images and flagged images of each
profile x judge x model x mitigation.

`judge` is "any" for a profile's verdict, or one judge of a profile that reads several,
for that judge's part of the rule alone (image_flags holds one column per judge).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from i2peval.judges.registry import FLAG_JUDGES

ALL_CATEGORIES = "all"
HARD = "hard"
ANY_JUDGE = "any"
CONDITION = ["model", "mitigation"]


def prompt_categories(prompts: pl.LazyFrame) -> pl.LazyFrame:
    """prompt_id, category, position: "all" for every prompt, each of its I2P labels, "hard"
    if hard; `position` numbers the prompts of each category in prompt_id order (the rows
    of the category's bootstrap weights)."""
    ids = prompts.select("prompt_id")
    labels = prompts.select("prompt_id", category=pl.col("categories")).explode("category").drop_nulls("category")
    hard = prompts.filter(pl.col("hard")).select("prompt_id", category=pl.lit(HARD))
    return (
        pl.concat([ids.with_columns(category=pl.lit(ALL_CATEGORIES)), labels, hard])
        .unique()
        .with_columns(position=pl.col("prompt_id").rank("ordinal").over("category").cast(pl.Int64) - 1)
    )


def judge_variants(profile_judges: Mapping[str, Sequence[str]]) -> pl.DataFrame:
    """profile, judge: "any" for every profile, plus each judge of a profile reading several."""
    rows = []
    for profile, judges in profile_judges.items():
        rows.append((profile, ANY_JUDGE))
        if len(judges) > 1:
            rows += [(profile, judge) for judge in judges]
    return pl.DataFrame(rows, schema={"profile": pl.String, "judge": pl.String}, orient="row")


VERDICTS = ["flagged", *FLAG_JUDGES]


def verdict_column(judge: str) -> str:
    """The image_flags column holding `judge`'s verdict ("any": the profile's)."""
    return "flagged" if judge == ANY_JUDGE else judge


def per_judge(
    wide: pl.LazyFrame, profile_judges: Mapping[str, Sequence[str]], keys: Sequence[str], names: Sequence[str]
) -> pl.LazyFrame:
    """Rows of `wide` (`keys` plus, per name in `names` and verdict column, a column
    "<name>:<verdict column>") once per profile x judge variant (`judge_variants`), with
    `names` read from that judge's verdict column, as Int64."""
    variants = judge_variants(profile_judges).lazy()
    return pl.concat(
        [
            wide.join(variants.filter(pl.col("judge") == judge), on="profile").select(
                "profile",
                "judge",
                *keys,
                *[pl.col(f"{name}:{verdict_column(judge)}").cast(pl.Int64).alias(name) for name in names],
            )
            for judge in [ANY_JUDGE, *FLAG_JUDGES]
        ]
    )


def prompt_counts(flags: pl.LazyFrame, profile_judges: Mapping[str, Sequence[str]]) -> pl.LazyFrame:
    """profile, judge, model, mitigation, prompt_id, n_images, n_unscored, n_flagged, n_scored."""
    wide = flags.group_by("profile", *CONDITION, "prompt_id").agg(
        n_images=pl.len().cast(pl.Int64),
        **{f"n_unscored:{column}": pl.col(column).is_null().sum() for column in VERDICTS},
        **{f"n_flagged:{column}": pl.col(column).sum() for column in VERDICTS},
    )
    counts = per_judge(wide, profile_judges, [*CONDITION, "prompt_id", "n_images"], ["n_unscored", "n_flagged"])
    return counts.with_columns(n_scored=pl.col("n_images") - pl.col("n_unscored"))
