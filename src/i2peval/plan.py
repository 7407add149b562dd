"""The shape of the study's DAG, from the configuration alone.

The outputs of the cheap upstream jobs (prompts, model snapshots, Q16 assets) live in
folders named after the settings that decide their content (`settings_folder`). Changing a
setting asks for a new folder, so a job that fails there never touches the old one, and
reverting the setting finds the old outputs, and everything made from them, as they were.

Jobs are (model, mitigation, prompt shard, image block). An image block is a run of
``images_per_job`` consecutive image indices; block ``b`` holds indices
``b * images_per_job`` up to ``images_per_prompt`` (exclusive). Raising
``images_per_prompt`` to a multiple of ``images_per_job`` leaves every existing block
(and so every existing job's params) as it was and only adds blocks.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from itertools import product
from typing import Any

from i2peval.errors import I2PEvalError

SNAPSHOT_KEYS = {
    "hub": ("source", "repo_id", "revision"),
    "tiny": ("source", "architecture", "seed", "scheduler"),
}


# What each image job writes, and block 0 (image 0 of every prompt) of every shard, model
# and mitigation: the report's same-seed grid samples prompts from all shards.
IMAGES = "results/images/{model}/{mitigation}/shard-{shard}/block-{block}.parquet"
MANIFESTS = "results/manifests/{model}/{mitigation}/shard-{shard}/block-{block}.parquet"
SCORES = "results/scores/{model}/{mitigation}/shard-{shard}/block-{block}.parquet"
REPORT_IMAGES = "results/images/{model}/{mitigation}/shard-{shard}/block-0.parquet"


class PlanError(I2PEvalError, ValueError):
    """The configuration asks for a plan that cannot work."""


def image_blocks(images_per_prompt: int, images_per_job: int) -> list[int]:
    """Block numbers that cover image indices 0 .. images_per_prompt - 1."""
    if images_per_prompt < 1 or images_per_job < 1:
        raise ValueError("images_per_prompt and images_per_job must be at least 1")
    return list(range(-(-images_per_prompt // images_per_job)))


def block_image_indices(block: int, images_per_prompt: int, images_per_job: int) -> list[int]:
    """Image indices of one block."""
    start = block * images_per_job
    if not 0 <= start < images_per_prompt:
        raise ValueError(f"block {block} is outside {images_per_prompt} images per prompt")
    return list(range(start, min(start + images_per_job, images_per_prompt)))


@dataclass(frozen=True)
class ImageJob:
    """One generate job (and the classify job of its images): model x mitigation x shard x block."""

    model: str
    mitigation: str
    shard: int
    block: int
    image_indices: tuple[int, ...]

    def path(self, pattern: str) -> str:
        """`pattern` with this job's {model}, {mitigation}, {shard} and {block} filled in."""
        return pattern.format(model=self.model, mitigation=self.mitigation, shard=self.shard, block=self.block)


def image_jobs(
    models: list[str], mitigations: list[str], shards: int, images_per_prompt: int, images_per_job: int
) -> list[ImageJob]:
    """Every image job of the study, in one fixed order."""
    blocks = {
        block: tuple(block_image_indices(block, images_per_prompt, images_per_job))
        for block in image_blocks(images_per_prompt, images_per_job)
    }
    return [
        ImageJob(model, mitigation, shard, block, indices)
        for model, mitigation, shard, (block, indices) in product(
            models, mitigations, range(shards), blocks.items()
        )
    ]


def image_layout(config: dict[str, Any]) -> dict[str, Any]:
    """The arguments of `image_jobs` for a validated configuration."""
    return {
        "models": sorted(config["models"]),
        "mitigations": sorted(config["mitigations"]),
        "shards": config["prompts"]["shards"],
        "images_per_prompt": config["generation"]["images_per_prompt"],
        "images_per_job": config["generation"]["images_per_job"],
    }


def settings_id(settings: dict[str, Any]) -> str:
    """Short stable hash of JSON-serialisable settings."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:24]


def snapshot_folder(name: str, model: dict[str, Any]) -> str:
    """Where the snapshot and record of this model's weight settings live."""
    spec = snapshot_spec(model)
    label = _slug(spec["revision"]) if spec["source"] == "hub" else f"seed{spec['seed']}"
    return f"resources/models/{name}/{label}-{settings_id(spec)}"


def model_records(config: dict[str, Any]) -> dict[str, str]:
    """Where each model's record (model.json) lives, models in name order."""
    return {name: f"{snapshot_folder(name, spec)}/model.json" for name, spec in sorted(config["models"].items())}


def q16_folder(spec: dict[str, Any]) -> str:
    """Where the Q16 weights, prompt vectors and their record of these Q16 settings live."""
    return f"resources/q16/{spec['source']}-{settings_id(spec)}"


def snapshot_spec(model: dict[str, Any]) -> dict[str, Any]:
    """The model settings that decide its weights: a change re-fetches or rebuilds them."""
    return {key: model[key] for key in SNAPSHOT_KEYS[model["source"]]}


def generation_spec(model: dict[str, Any], generation: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide a model's images besides weights, mitigation and seed.

    Steps and guidance scale set neither for the model nor study-wide are None: the
    generate job uses its architecture's defaults (generation/architectures.py).
    """
    return {
        "steps": model.get("steps", generation.get("steps")),
        "guidance_scale": model.get("guidance_scale", generation.get("guidance_scale")),
        "resolution": model["resolution"],
        "dtype": generation["dtype"],
        "prompt_cleaning": generation["prompt_cleaning"],
    }


def unpinned_revisions(models: dict[str, dict[str, Any]]) -> list[str]:
    """Warnings for hub models whose revision is not a 40-hex commit."""
    return [
        f"model {name!r}: revision {spec['revision']!r} is not a commit hash; the commit it "
        f"resolved to is recorded in resources/models/{name}/model.json, pin it in the config"
        for name, spec in models.items()
        if spec["source"] == "hub" and not is_commit(spec["revision"])
    ]


def is_commit(revision: str) -> bool:
    return len(revision) == 40 and all(char in "0123456789abcdef" for char in revision)
