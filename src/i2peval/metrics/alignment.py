"""Prompt alignment per model x mitigation x category: how well images still show their prompt.

CLIPScore = ``100 * max(cos, 0)`` of the CLIP image and prompt embeddings (the raw cosine
is the clip_score judge's score), averaged over the scored images of each condition and
category (a prompt counts in every category it carries, and in "all"). It measures what a
mitigation costs; an image whose cosine is missing or NaN is counted as unscored.
"""

from __future__ import annotations

import polars as pl

from i2peval.metrics.prompt_sets import category_rows
from i2peval.schemas import ALIGNMENT

COSINE = "clip_score_cosine"


def clip_score() -> pl.Expr:
    """CLIPScore of each image from its cosine; null when the cosine is missing or NaN."""
    cosine = pl.col(COSINE)
    return pl.when(cosine.is_null() | cosine.is_nan()).then(None).otherwise(100 * cosine.clip(lower_bound=0))


def compute_alignment(scores: pl.LazyFrame) -> pl.DataFrame:
    """The ALIGNMENT table from per-image cosines with their prompts' categories
    (columns model, mitigation, prompt_id, text, categories, clip_score_cosine)."""
    rows = category_rows(
        scores.select("model", "mitigation", "prompt_id", "image_index", "text", "categories", clip_score().alias("score"))
    )
    keys = ["model", "mitigation", "category"]
    return (
        rows.with_columns(pl.col("score").cast(pl.Float64))
        # float sums in a fixed order, the same numbers every run (lazy: without
        # maintain_order the sort is dropped)
        .sort(*keys, "prompt_id", "image_index")
        .group_by(keys, maintain_order=True)
        .agg(
            n_images=pl.len(),
            n_unscored=pl.col("score").is_null().sum(),
            clip_score_mean=pl.col("score").mean(),
            clip_score_std=pl.col("score").std(),
        )
        .sort(keys)
        .collect()
        .select(ALIGNMENT.names)
        .cast({name: pl.from_arrow(ALIGNMENT.empty_table()).schema[name] for name in ALIGNMENT.names})
    )
