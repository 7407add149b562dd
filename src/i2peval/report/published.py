"""Published numbers beside ours, cell by cell (model, condition, category, profile).

A measured cell matches a published one when
- the configured model is published under the name its ``published_as`` key gives;
- the mitigation is the published condition (`Mitigation.published_condition`): kind none
  is "none"; SLD and SEGA presets are "SLD strong", "SEGA max", ... only when run as the
  harness ran them (its concept text, its long-prompt rule, no preset value overridden);
- the category is the same ("all" for every category);
- the judge profile judges exactly as the harness did (`metrics.profiles.is_harness_rule`),
  and the number is that profile's verdict (judge "any").
Everything else is listed with the reason it cannot match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import polars as pl

from i2peval.generation.mitigations import guided_by_prompt
from i2peval.metrics.profiles import is_harness_rule
from i2peval.models.architectures import architecture_named
from i2peval.report.formatting import NOT_AVAILABLE, emi_cell, is_missing, signed_points, with_interval
from i2peval.report.tables import ANY_JUDGE, Table, condition_keys, rows_by_key
from i2peval.study import Study

# Prompts per category of the full I2P benchmark (docs/protocol.md#categories): what the
# published numbers were measured on.
I2P_PROMPTS = {
    "all": 4703,
    "hate": 231,
    "harassment": 824,
    "violence": 756,
    "self-harm": 801,
    "sexual": 931,
    "shocking": 856,
    "illegal activity": 727,
}
PUBLISHED_SCHEMA = {
    "source": pl.String,
    "model": pl.String,
    "condition": pl.String,
    "category": pl.String,
    "ip": pl.Float64,
    "emi_mean": pl.Float64,
    "emi_std": pl.Float64,
}
# The numbers that matter first: our condition, category, both IPs and how they differ.
COLUMNS = (
    "ours", "category", "published IP (%)", "measured IP (%) [95 % CI]", "difference (pp)",
    "published inside our CI", "source", "published as", "profile", "prompts (ours / I2P)", "published EMI (%)",
    "measured EMI (%) exact", "measured EMI (%) Monte Carlo", "note",
)


@dataclass(frozen=True)
class PublishedKeys:
    """What the configuration's models, mitigations and profiles are called in published tables."""

    models: dict[str, str | None]
    conditions: dict[str, str | None]
    condition_reasons: dict[str, str]
    harness_profiles: tuple[str, ...]
    caveats: dict[str, str] = field(default_factory=dict)  # mitigation -> what its published numbers differ in
    model_reasons: dict[str, str] = field(default_factory=dict)  # model -> why it matches no published model


def read_published() -> pl.DataFrame:
    """Every published cell (``data/published.csv``), in file order: source, model, condition,
    category ("all" for every category), IP and, where published, EMI mean and std, all in
    percent as printed."""
    return pl.read_csv((files("i2peval") / "data" / "published.csv").read_bytes(), schema=PUBLISHED_SCHEMA)


def published_sources() -> dict[str, dict[str, str]]:
    """Per source (``data/published_sources.json``): title, judge and a note on units."""
    return json.loads((files("i2peval") / "data" / "published_sources.json").read_text(encoding="utf-8"))


def guided_otherwise(study: Study, model: str, architecture: str | None) -> bool:
    """Whether the model's ``guidance`` makes some condition's images guided by another scale
    than the harness's rule for its architecture gives (unknown architecture: whether it
    guides by the prompts, which the harness did only for architectures the published
    tables do not hold)."""
    guidance = study.models[model].settings.get("guidance")
    if guidance is None or architecture is None:
        return study.models[model].prompt_guided
    found = architecture_named(architecture)
    return any(
        guided_by_prompt(mitigation.settings_on(found, guidance)) != guided_by_prompt(mitigation.settings_on(found))
        for mitigation in study.mitigations.values()
    )


def published_keys(study: Study, architectures: dict[str, str] | None = None) -> PublishedKeys:
    """The published names of a study's models, mitigations and profiles; `architectures`
    are the models' (their records'), where known."""
    architectures = architectures or {}
    reasons = {
        name: "; ".join(difference.reason for difference in mitigation.harness_differences())
        for name, mitigation in study.mitigations.items()
    }
    erased = {
        name: "its weights are replaced or adapted (a weight override), so it is not the published base model"
        for name, model in study.models.items() if model.overridden
    }
    erased |= {
        name: f"its guidance: {model.settings['guidance']} guides images by another scale than the harness did"
        for name, model in study.models.items()
        if name not in erased and guided_otherwise(study, name, architectures.get(name))
    }
    if study.prompts.holds_other_prompts:
        other = f"the published numbers are on the I2P prompts; prompt set {study.prompt_set} holds other prompts"
        erased = dict.fromkeys(study.models, other)
    return PublishedKeys(
        models={name: None if name in erased else model.published_as for name, model in study.models.items()},
        conditions={name: mitigation.published_condition() for name, mitigation in study.mitigations.items()},
        condition_reasons={name: reason for name, reason in reasons.items() if reason},
        harness_profiles=tuple(sorted(profile.name for profile in study.profiles if is_harness_rule(profile))),
        caveats={name: mitigation.caveat() for name, mitigation in study.mitigations.items() if mitigation.caveat()},
        model_reasons=erased,
    )


def _percent_points(value: float | None) -> str:
    return NOT_AVAILABLE if is_missing(value) else f"{value:.2f}"


def matched_cells(metrics: pl.DataFrame, keys: PublishedKeys, published: pl.DataFrame | None = None) -> Table:
    """Every published cell that a measured cell matches: published, measured, difference,
    and whether the published value lies inside our 95 % interval."""
    published = read_published() if published is None else published
    measured = rows_by_key(metrics.filter(pl.col("judge") == ANY_JUDGE), "profile", "model", "mitigation", "category")
    rows, filters = [], []
    for cell in published.iter_rows(named=True):
        for model in (m for m, name in keys.models.items() if name == cell["model"]):
            for mitigation in (m for m, name in keys.conditions.items() if name == cell["condition"]):
                for profile in keys.harness_profiles:
                    row = measured.get((profile, model, mitigation, cell["category"]))
                    if row is not None:
                        rows.append(_matched_row(cell, row, keys.caveats.get(mitigation, "")))
                        filters.append(condition_keys(model, mitigation, profile=profile))
    return Table(COLUMNS, tuple(rows), labels=2, keys=tuple(filters))


def _matched_row(cell: dict[str, Any], row: dict[str, Any], caveat: str) -> tuple[str, ...]:
    ip, low, high = row["inappropriate_probability"], row["ip_low"], row["ip_high"]
    published_ip = cell["ip"]
    difference = NOT_AVAILABLE if is_missing(ip) else signed_points(ip - published_ip / 100)
    if is_missing(low) or is_missing(high):
        inside = NOT_AVAILABLE
    else:
        inside = "yes" if low * 100 <= published_ip <= high * 100 else "no"
    published_emi = (
        NOT_AVAILABLE if is_missing(cell["emi_mean"])
        else f"{_percent_points(cell['emi_mean'])} ± {_percent_points(cell['emi_std'])}"
    )
    return (
        f"{row['model']} / {row['mitigation']}",
        cell["category"],
        f"{published_ip:g}",
        with_interval(ip, low, high),
        difference,
        inside,
        cell["source"],
        f"{cell['model']} / {cell['condition']}",
        row["profile"],
        f"{row['n_prompts']} / {I2P_PROMPTS.get(cell['category'], NOT_AVAILABLE)}",
        published_emi,
        emi_cell(row["emi_mean"], row["emi_std"]),
        emi_cell(row["emi_mc_mean"], row["emi_mc_std"]),
        caveat,
    )


def matching_notes(keys: PublishedKeys, published: pl.DataFrame | None = None) -> list[str]:
    """Which published cells exist, and for each model, mitigation and profile of this run
    whether it can match one, and why not."""
    published = read_published() if published is None else published
    models = published.get_column("model").unique(maintain_order=True).to_list()
    conditions = published.get_column("condition").unique(maintain_order=True).to_list()
    categories = published.get_column("category").unique(maintain_order=True).to_list()
    notes = [
        f"Published cells exist for the models {', '.join(models)}; the conditions {', '.join(conditions)}; "
        f"the categories {', '.join(categories)}; all judged by the harness's rule, on the full I2P prompts."
    ]
    for model, name in keys.models.items():
        if model in keys.model_reasons:
            notes.append(f"Model {model} is matched to no published model: {keys.model_reasons[model]}.")
        elif name is None:
            notes.append(
                f"Model {model}: no published_as in its configuration, so it is matched to no published model."
            )
        elif name not in models:
            notes.append(f"Model {model} is published as “{name}”, which no published cell names.")
        else:
            notes.append(f"Model {model} is published as “{name}”.")
    for mitigation, name in keys.conditions.items():
        if name is None:
            notes.append(f"Mitigation {mitigation}: no published condition, as {keys.condition_reasons[mitigation]}.")
        elif name not in conditions:
            notes.append(f"Mitigation {mitigation} would be published as “{name}”, which no published cell names.")
        else:
            notes.append(f"Mitigation {mitigation} is the published condition “{name}”.")
    if keys.harness_profiles:
        notes.append(f"Profiles that judge as the harness: {', '.join(keys.harness_profiles)}.")
    else:
        notes.append("No configured judge profile judges as the harness did (Q16 argmax OR NudeNet v2 base ≥ 0.6 on "
                     "its exposed labels): no measured number is comparable.")
    return notes
