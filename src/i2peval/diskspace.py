"""Refuse a run whose images will not fit on disk, before any job starts.

The bytes a generate job writes are estimated from its image count and resolution:
PNG bytes per pixel as measured on the demo, plus the per-image overhead of the image
container, the manifest and the score table.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from i2peval.prompts.source import I2P_HUB_PROMPTS
from i2peval.schemas import SchemaMismatch

# Measured on the demo's finished run (320 images of 64 x 64 px, results/ of `make demo`):
# the PNGs took 3,671,388 bytes, 2.80 bytes per pixel. The demo's random-weight images are
# noise-like, close to PNG's worst case for RGB (3 bytes per pixel); photographs compress
# better, so for real models the estimate errs on the side of refusing.
PNG_BYTES_PER_PIXEL = 2.8
# Per image, same run: image container beyond its PNGs 55 bytes, manifest 356, scores 927
# (every judge's raw scores: 47 columns, mostly per-column overhead in 20-image files).
RECORD_BYTES_PER_IMAGE = 1400


@dataclass(frozen=True)
class PlannedImages:
    """The images one planned generate job will make."""

    images: int
    resolution: int


class NotEnoughDiskSpace(RuntimeError):
    """The planned images would not fit; the message says how much is needed and free."""


def image_bytes(images: int, resolution: int) -> int:
    """Estimated bytes on disk of `images` square images of `resolution` pixels."""
    return images * (math.ceil(PNG_BYTES_PER_PIXEL * resolution * resolution) + RECORD_BYTES_PER_IMAGE)


def required_bytes(jobs: Sequence[PlannedImages]) -> int:
    """Bytes the jobs will write, plus the largest job once more: a job that finishes
    holds its saved batches and its joined container at the same time."""
    sizes = [image_bytes(job.images, job.resolution) for job in jobs]
    return sum(sizes) + max(sizes, default=0)


def prompts_in_shard(shard_path: Path, shards: int, prompt_count: int | None) -> int:
    """Prompts of one shard: from the shard file when it exists, else the largest share of
    `prompt_count` (`prompts.source.PromptSource.known_count`). A hub file other than the I2P
    benchmark is counted as the I2P benchmark until its prompts job has run."""
    if shard_path.exists():
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_metadata(shard_path).num_rows
        except (OSError, pa.ArrowException) as error:
            raise SchemaMismatch(f"{shard_path}: not a readable Parquet file ({error})") from None
    return math.ceil((prompt_count or I2P_HUB_PROMPTS) / shards)


def size(count: int) -> str:
    """A byte count in the largest unit that keeps it at least 1 (GB, MB, kB)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{count} bytes"


def check_free_space(jobs: Sequence[PlannedImages], folder: Path) -> int:
    """Raise NotEnoughDiskSpace unless the images of `jobs` fit where `folder` is (or will be).

    Returns the bytes needed.
    """
    needed = required_bytes(jobs)
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise NotEnoughDiskSpace(
            f"not enough disk space: the {len(jobs)} planned generate jobs will write about "
            f"{size(needed)} of images to {folder}, but {existing} has {size(free)} free "
            f"(estimate: {sum(job.images for job in jobs):,} images at {PNG_BYTES_PER_PIXEL} bytes per "
            f"pixel, see src/i2peval/diskspace.py). Free space, run in a working directory on a larger "
            f"disk (--directory), plan fewer jobs (a target or --until), or, if your images are known "
            f"to be smaller, set execution: check_disk_space: false"
        )
    return needed
