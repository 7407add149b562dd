"""What a run's images were made from and with, checked against what the metrics and the
report will say they were made from and with.

Every generate job writes a manifest row per image: the model's commit, the seed, the
generation settings and the mitigation's settings. Aggregation (the rule and ``i2peval
metrics``) and the report (the rule and ``i2peval report``) read them back and refuse
images of another snapshot, other prompts or other settings than the configuration they
are given: a configuration that is not the run's would otherwise state wrong settings
beside the run's numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from i2peval.errors import I2PEvalError
from i2peval.generation.mitigations import UNRECORDED_RULES, guided_by_prompt, settings_on
from i2peval.generation.seeds import image_seed
from i2peval.models.architectures import architecture_named
from i2peval.models.snapshots import model_commit_label
from i2peval.schemas import MANIFEST, SET_COLUMN, SchemaMismatch, read_columns, read_first_row

IMAGE_KEYS = ["model", "mitigation", "prompt_id", "image_index"]
SETTING_COLUMNS = [
    SET_COLUMN, "model", "architecture", "mitigation", "mitigation_settings",
    "steps", "guidance_scale", "width", "height", "dtype", "prompt_cleaning",
]  # fmt: skip
# The manifest column of each generation setting (`ModelSpec.generation_params` keys).
GENERATION_COLUMNS = {
    "steps": ("steps",),
    "guidance_scale": ("guidance_scale",),
    "resolution": ("width", "height"),
    "dtype": ("dtype",),
    "prompt_cleaning": ("prompt_cleaning",),
}
REMAKE = "delete it and run the workflow again to make its images again"
WRONG_CONFIGURATION = (
    "is this the configuration the run was made with? Give that one, or run the workflow with this one "
    "to make the images again"
)


class StaleImages(I2PEvalError):
    """Images were made from another model snapshot, other prompts or other settings than
    the configuration says."""


@dataclass(frozen=True)
class ImageSettings:
    """What the configuration says every image of one prompt set was made with: the set,
    each model's generation settings (steps and guidance scale None where the
    architecture's default applies) and each mitigation's settings."""

    prompt_set: str
    models: dict[str, dict[str, Any]]  # `ModelSpec.generation_params`, by model
    mitigations: dict[str, dict[str, Any]]  # `Mitigation.settings()`, by mitigation

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ImageSettings:
        return cls(prompt_set=params["prompt_set"], models=params["models"], mitigations=params["mitigations"])

    def params(self) -> dict[str, Any]:
        return {"prompt_set": self.prompt_set, "models": self.models, "mitigations": self.mitigations}

    def mitigation(self, mitigation: str, model: str, architecture: str) -> dict[str, Any]:
        """What images of `model`, of `architecture`, are made with under `mitigation`
        (`mitigations.settings_on`, the model's `guidance`)."""
        return settings_on(
            self.mitigations[mitigation], architecture_named(architecture), self.models[model].get("guidance")
        )

    def generation(self, model: str, architecture: str) -> dict[str, Any]:
        """`model`'s generation settings, its architecture's defaults filled in (and its text
        cleaning: `Architecture.prompt_cleaning`)."""
        settings = dict(self.models[model])
        found = architecture_named(architecture)
        for key, default in found.defaults().items():
            if settings[key] is None:
                settings[key] = default
        settings["prompt_cleaning"] = found.prompt_cleaning(settings["prompt_cleaning"])
        return settings


def same_value(found: Any, wanted: Any) -> bool:
    """Equal, floats to float32 precision (manifests store the guidance scale as float32)."""
    if isinstance(found, float) or isinstance(wanted, float):
        return found is not None and wanted is not None and math.isclose(found, wanted, rel_tol=1e-6)
    return found == wanted


def flat_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"parameters.threshold": 0.8, ...}`` of nested settings."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(flat_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def setting_mismatches(row: dict[str, Any], expected: ImageSettings) -> list[str]:
    """How one distinct manifest setting row differs from `expected`, in words."""
    model, mitigation = row["model"], row["mitigation"]
    if row[SET_COLUMN] != expected.prompt_set:
        return [f"its images are of the prompt set {row[SET_COLUMN]!r}, not of {expected.prompt_set!r}"]
    if model not in expected.models or mitigation not in expected.mitigations:
        return [f"model {model!r} with mitigation {mitigation!r} is not a condition of the configuration"]
    differences = []
    wanted = expected.generation(model, row["architecture"])
    made_with, configured = mitigation_settings(row, expected)
    for key, columns in GENERATION_COLUMNS.items():
        if key == "guidance_scale" and guided_by_prompt(configured):
            continue  # each image's own: `check_manifests` holds it to its prompt's
        for column in columns:
            if not same_value(row[column], wanted[key]):
                differences.append(
                    f"{model}'s {key} is {row[column]!r} in the images, {wanted[key]!r} in the configuration"
                )
                break
    engine_keys = engine_rules(row["architecture"], made_with, configured)
    for key in sorted(made_with.keys() | configured.keys()):
        if not same_value(made_with.get(key), configured.get(key)):
            source = "this version of the engine" if key in engine_keys else "the configuration"
            differences.append(
                f"mitigation {mitigation}'s {key} is {made_with.get(key)!r} in the images, "
                f"{configured.get(key)!r} in {source}"
            )
    return differences


def mitigation_settings(row: dict[str, Any], expected: ImageSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The flat mitigation settings one manifest row's images were made with (the rules a
    manifest did not record yet filled in as `UNRECORDED_RULES`) and those `expected` says."""
    configured = flat_settings(expected.mitigation(row["mitigation"], row["model"], row["architecture"]))
    made_with = {
        key: value for key, value in UNRECORDED_RULES.items() if key in configured
    } | flat_settings(json.loads(row["mitigation_settings"]))
    return made_with, configured


def engine_rules(architecture: str, made_with: dict[str, Any], configured: dict[str, Any]) -> list[str]:
    """The mitigation settings of images of `architecture` that the engine decides, not the
    configuration (so no job's params hold them)."""
    keys = [key for key in UNRECORDED_RULES if key in made_with or key in configured]
    return keys if architecture_named(architecture).mitigation_long_prompts else [*keys, "long_prompts"]


def engine_rule_mismatches(row: dict[str, Any], expected: ImageSettings) -> list[str]:
    """How one manifest row's images were made by other rules of the engine than this
    version's, in words (`engine_rules`; other settings are in the jobs' params)."""
    if row["model"] not in expected.models or row["mitigation"] not in expected.mitigations:
        return []
    made_with, configured = mitigation_settings(row, expected)
    return [
        f"mitigation {row['mitigation']}'s {key} is {made_with.get(key)!r} in the images, "
        f"{configured.get(key)!r} in this version of the engine"
        for key in engine_rules(row["architecture"], made_with, configured)
        if not same_value(made_with.get(key), configured.get(key))
    ]


def made_otherwise(path: Path, expected: ImageSettings) -> list[str]:
    """How the images of the manifest at `path` were made by other rules of the engine than
    this version's (`engine_rule_mismatches`), in words, or why its manifest cannot tell.

    Reads the first row alone, so planning stays fast: a generate job writes the same
    settings into every row (the writer keeps no part made with other settings);
    aggregation checks them all (`read_manifests`)."""
    try:
        first = read_first_row(path, MANIFEST, SETTING_COLUMNS)
    except SchemaMismatch as error:
        return [f"its manifest is damaged: {error}"]
    return ["its manifest lists no image"] if first is None else engine_rule_mismatches(first, expected)


def check_image_settings(path: Path, manifest: pl.DataFrame, expected: ImageSettings) -> None:
    """Raise `StaleImages` naming `path` (a manifest, read with SETTING_COLUMNS) and the
    setting, unless its images were made with the `expected` settings."""
    for row in manifest.select(SETTING_COLUMNS).unique().sort(SETTING_COLUMNS).iter_rows(named=True):
        differences = setting_mismatches(row, expected)
        if differences:
            raise StaleImages(f"{path}: {'; '.join(differences)}: {WRONG_CONFIGURATION}")


def read_manifests(paths: Sequence[Path], expected: ImageSettings, columns: Sequence[str] = ()) -> pl.DataFrame:
    """IMAGE_KEYS and `columns` of every manifest, each checked against `expected` first;
    the column ``guidance_from_prompt`` says whether an image was guided by its prompt's scale."""
    keep = list(dict.fromkeys([*IMAGE_KEYS, *columns]))
    stored = [column for column in dict.fromkeys([*keep, *SETTING_COLUMNS]) if column != "guidance_from_prompt"]
    frames = []
    for path in paths:
        manifest = pl.from_arrow(read_columns(path, MANIFEST, stored, REMAKE))
        check_image_settings(path, manifest, expected)
        guided = [
            settings for settings in manifest["mitigation_settings"].unique() if guided_by_prompt(json.loads(settings))
        ]
        manifest = manifest.with_columns(guidance_from_prompt=pl.col("mitigation_settings").is_in(guided))
        frames.append(manifest.select(keep))
    return pl.concat(frames)


def check_manifests(manifests: pl.DataFrame, prompts: pl.DataFrame, records: dict[str, tuple[Path, dict]]) -> None:
    """Raise `StaleImages` unless every image was made from its model's current snapshot and
    its prompt's current text and seed (and scale, for images guided by it).

    `records` maps each model to its record's path and content. Generate jobs do not rerun
    when a cheap upstream job is repeated, so this is where a snapshot that resolved to
    another commit, or a prompt file that changed, is caught.
    """
    for model, (record_path, record) in records.items():
        expected = model_commit_label(record)
        found = sorted(
            manifests.filter(pl.col("model") == model).get_column("model_commit").unique().to_list()
        )
        stale = [commit for commit in found if commit != expected]
        if stale:
            raise StaleImages(
                f"images of model {model!r} were made from {stale}, but {record_path} now records "
                f"{expected!r}: pin the revision they were made from in the configuration to keep "
                f"them, or delete results/images/{model} and results/manifests/{model} to make them again"
            )
    pairs = (
        manifests.select("prompt_id", "image_index", "seed", "text")
        .unique()
        .join(prompts.select("prompt_id", prompt_seed="seed", prompt_text="text"), on="prompt_id", how="left")
        .sort("prompt_id", "image_index")
    )
    for prompt_id, image_index, seed, text, prompt_seed, prompt_text in pairs.iter_rows():
        if text != prompt_text and prompt_text is not None:
            raise StaleImages(
                f"image {image_index} of prompt {prompt_id} was made from the text {text!r}, but the current prompt "
                f"table says {prompt_text!r}: the prompts changed since the images were made; delete results/images "
                "and results/manifests to make them again, or restore the prompt source"
            )
        if prompt_seed is None or image_seed(prompt_seed, image_index) != seed:
            raise StaleImages(
                f"image {image_index} of prompt {prompt_id} was made with seed {seed}, which the current "
                "prompt table does not give it: the prompts changed since the images were made; "
                "delete results/images and results/manifests to make them again, or restore the prompt source"
            )
    if "guidance_from_prompt" in manifests.columns:
        guided = (
            manifests.filter("guidance_from_prompt")
            .select("prompt_id", "guidance_scale")
            .unique()
            .join(prompts.select("prompt_id", prompt_guidance="guidance"), on="prompt_id", how="left")
            .sort("prompt_id")
        )
        for prompt_id, scale, prompt_scale in guided.iter_rows():
            if not same_value(scale, prompt_scale):
                raise StaleImages(
                    f"images of prompt {prompt_id} were guided by its scale {scale!r}, but the current prompt table "
                    f"says {prompt_scale!r}: the prompts changed since the images were made; delete results/images "
                    "and results/manifests to make them again, or restore the prompt source"
                )
