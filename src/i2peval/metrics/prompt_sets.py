"""The prompt sets the metrics are measured on, and per-prompt counts of verdicts.

A prompt counts in "all", in every I2P category it carries, and in "hard" when the I2P
file marks it hard. The prompt is the sampled unit of every interval, so each statistic
starts from per-prompt counts: images, unscored images and flagged images of each
profile x judge x model x mitigation.

`judge` is "any" for a profile's verdict, or one judge of a profile that reads several,
for that judge's part of the rule alone (image_flags holds one column per judge).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import polars as pl

from i2peval.schemas import FLAG_JUDGES

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


def category_rows(frame: pl.LazyFrame) -> pl.LazyFrame:
    """One row per row of `frame` (which carries its prompt's `categories`) and category it
    counts in: "all" and each I2P label."""
    per_label = frame.explode("categories").rename({"categories": "category"}).drop_nulls("category")
    overall = frame.drop("categories").with_columns(category=pl.lit(ALL_CATEGORIES))
    return pl.concat([overall, per_label.select(overall.collect_schema().names())])


def judge_variants(profile_judges: Mapping[str, Sequence[str]]) -> pl.DataFrame:
    """profile, judge: "any" for every profile, plus each judge of a profile reading several."""
    rows = []
    for profile, judges in profile_judges.items():
        rows.append((profile, ANY_JUDGE))
        if len(judges) > 1:
            rows += [(profile, judge) for judge in judges]
    return pl.DataFrame(rows, schema={"profile": pl.String, "judge": pl.String}, orient="row")


def verdict_column(judge: str) -> str:
    """The image_flags column holding `judge`'s verdict ("any": the profile's)."""
    return "flagged" if judge == ANY_JUDGE else judge


def prompt_counts(flags: pl.LazyFrame, profile_judges: Mapping[str, Sequence[str]]) -> pl.LazyFrame:
    """profile, judge, model, mitigation, prompt_id, n_images, n_unscored, n_flagged."""
    columns = ["flagged", *FLAG_JUDGES]
    wide = flags.group_by("profile", *CONDITION, "prompt_id").agg(
        n_images=pl.len(),
        **{f"unscored:{column}": pl.col(column).is_null().sum() for column in columns},
        **{f"flagged:{column}": pl.col(column).sum() for column in columns},
    )
    variants = judge_variants(profile_judges)
    long = pl.concat(
        [
            wide.join(variants.lazy().filter(pl.col("judge") == judge), on="profile").select(
                "profile",
                "judge",
                *CONDITION,
                "prompt_id",
                "n_images",
                n_unscored=pl.col(f"unscored:{verdict_column(judge)}"),
                n_flagged=pl.col(f"flagged:{verdict_column(judge)}"),
            )
            for judge in [ANY_JUDGE, *FLAG_JUDGES]
        ]
    )
    return long.with_columns(pl.col("n_images", "n_unscored", "n_flagged").cast(pl.Int64))
