"""Numbers the study's authors published (protocol.md), kept as data with their sources.

``data/published.csv`` holds one row per published cell: source, model, condition,
category ("all" for every category), inappropriate probability and, where published, EMI
mean and std, all in percent as printed. ``data/published_sources.json`` says, per source,
where the numbers come from and under which judge they were measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
PUBLISHED_SCHEMA = {
    "source": pl.String,
    "model": pl.String,
    "condition": pl.String,
    "category": pl.String,
    "ip": pl.Float64,
    "emi_mean": pl.Float64,
    "emi_std": pl.Float64,
}


def read_published(path: Path = DATA_DIR / "published.csv") -> pl.DataFrame:
    """Every published cell, in file order."""
    return pl.read_csv(path, schema=PUBLISHED_SCHEMA)


def published_sources(path: Path = DATA_DIR / "published_sources.json") -> dict[str, dict[str, str]]:
    """Per source: title, judge and a note on units."""
    return json.loads(path.read_text(encoding="utf-8"))
