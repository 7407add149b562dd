"""The shape of the study's DAG: where each stage writes, and the image jobs.

The outputs of the cheap upstream jobs (prompts, model snapshots, judge assets) live in
folders named after the settings that decide their content (`settings_id`). Changing a
setting asks for a new folder, so a job that fails there never touches the old one, and
reverting the setting finds the old outputs, and everything made from them, as they were.

Jobs are (prompt set, model, mitigation, prompt shard, image block). Every prompt set's
files live in a folder of their own, ``results/sets/<name>/`` (`set_folder`), except the
set named i2p's, which keep the folders of a study with one set (``results/``): a study
that gains a set keeps every image it has. An image block is a run of
``images_per_job`` consecutive image indices; block ``b`` holds indices
``b * images_per_job`` up to ``images_per_prompt`` (exclusive). Raising
``images_per_prompt`` to a multiple of ``images_per_job`` leaves every existing block
(and so every existing job's params) as it was and only adds blocks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

from i2peval.errors import I2PEvalError

# What each image job writes, and block 0 (image 0 of every prompt) of every shard, model
# and mitigation: the report's same-seed grid samples prompts from all shards. {setdir} is
# the prompt set's folder below results/ (`set_folder`).
IMAGES = "results/{setdir}images/{model}/{mitigation}/shard-{shard}/block-{block}.parquet"
MANIFESTS = "results/{setdir}manifests/{model}/{mitigation}/shard-{shard}/block-{block}.parquet"
SCORES = "results/{setdir}scores/{model}/{mitigation}/shard-{shard}/block-{block}.parquet"
REPORT_IMAGES = "results/{setdir}images/{model}/{mitigation}/shard-{shard}/block-0.parquet"
# FID (metrics/fid.py): each condition's statistics, and the set's table beside its metrics
FID_STATISTICS = "results/{setdir}fid/{model}/{mitigation}.npz"
FID_REFERENCE_STATISTICS = "resources/fid/reference-{reference}.npz"  # reference: the folder's id
FID_TABLE = "fid.parquet"
# What the aggregate stage writes (by output name) and the report.
METRICS_DIR = "results/{setdir}metrics"
METRICS_TABLES = {
    "metrics": "metrics.parquet",
    "flags": "image_flags.parquet",
    "alignment": "alignment.parquet",
    "comparisons": "comparisons.parquet",
}
REPORT = "results/{setdir}report.html"
# The name of the one prompt set a `prompts` section configures, which keeps the folders
# of a study with one set in a study with several
I2P_SET = "i2p"


def set_folder(prompt_set: str) -> str:
    """The folder, below results/, of a prompt set's images, scores, metrics and report:
    "" for the set named i2p, ``sets/<name>/`` for any other."""
    return "" if prompt_set == I2P_SET else f"sets/{prompt_set}/"


def set_of_folder(folder: str) -> str:
    """The prompt set whose folder (`set_folder`, a job's ``{setdir}``) is `folder`."""
    return folder.removeprefix("sets/").removesuffix("/") or I2P_SET


def metrics_tables(folder: str | Path) -> dict[str, Path]:
    """The aggregate stage's tables in `folder`, by output name."""
    return {name: Path(folder) / file for name, file in METRICS_TABLES.items()}


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
    """One generate job (and the classify job of its images): model x mitigation x shard x
    block of the prompt set whose folder is `setdir`."""

    model: str
    mitigation: str
    shard: int
    block: int
    image_indices: tuple[int, ...]
    setdir: str = ""

    def path(self, pattern: str) -> str:
        """`pattern` with this job's {setdir}, {model}, {mitigation}, {shard} and {block} filled in."""
        return pattern.format(
            setdir=self.setdir, model=self.model, mitigation=self.mitigation, shard=self.shard, block=self.block
        )


def image_jobs(
    models: list[str],
    mitigations: list[str],
    shards: int,
    images_per_prompt: int,
    images_per_job: int,
    setdir: str = "",
) -> list[ImageJob]:
    """Every image job of one prompt set, in one fixed order."""
    blocks = {
        block: tuple(block_image_indices(block, images_per_prompt, images_per_job))
        for block in image_blocks(images_per_prompt, images_per_job)
    }
    return [
        ImageJob(model, mitigation, shard, block, indices, setdir)
        for model, mitigation, shard, (block, indices) in product(
            models, mitigations, range(shards), blocks.items()
        )
    ]


def sorted_keys(value: Any) -> Any:
    """`value` with the keys of every mapping in it sorted: settings written in another key
    order (a configuration saved by another tool) make the same job params, so they
    rerun nothing."""
    if isinstance(value, dict):
        return {key: sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(item) for item in value]
    return value


def settings_id(settings: dict[str, Any]) -> str:
    """Short stable hash of JSON-serialisable settings."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
