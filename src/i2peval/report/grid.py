"""The same-seed grid: for a sample of prompts, each model's image under every condition
side by side (same prompt, same image index, hence the same seed), with what each judge
of the primary profile said about it.

The sample is deterministic: prompts ranked by a hash of their id and the sample seed,
so adding prompts keeps earlier picks unless a new one ranks before them. Image 0 of
each prompt is shown; it lies in block 0 of the prompt's shard.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from i2peval.errors import I2PEvalError
from i2peval.generation.imagestore import decode_png
from i2peval.generation.seeds import image_seed
from i2peval.judges.registry import FLAG_JUDGES, IMAGE_FLAGS, JUDGES
from i2peval.schemas import IMAGES, SchemaMismatch, conform

IMAGE_INDEX = 0


@dataclass(frozen=True)
class Verdict:
    """One judge's part of the profile for one image: "fired", "did not fire" or "unscored"."""

    judge: str
    state: str


@dataclass(frozen=True)
class GridCell:
    """One condition's image of a sampled prompt, with the primary profile's verdicts."""

    mitigation: str
    data_uri: str
    width: int
    height: int
    flagged: str  # "flagged", "not flagged" or "unscored"
    verdicts: tuple[Verdict, ...]
    degenerate: str | None


@dataclass(frozen=True)
class GridRow:
    """A sampled prompt: its text and seed, and one cell per condition."""

    prompt_id: int
    prompt: str
    categories: str
    seed: int
    cells: tuple[GridCell, ...]


@dataclass(frozen=True)
class ModelGrid:
    model: str
    mitigations: tuple[str, ...]
    rows: tuple[GridRow, ...]


def sample_prompts(prompt_ids: list[int], count: int, seed: int = 0) -> list[int]:
    """`count` prompt ids ranked by sha256(seed, id), in id order; all when fewer."""
    def rank(prompt_id: int) -> bytes:
        return hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()

    return sorted(sorted(prompt_ids, key=rank)[:count])


class ReportInputError(I2PEvalError, ValueError):
    """The tables and images the report reads do not fit together."""


def data_uri(image: Image.Image, size: int) -> tuple[str, int, int]:
    """An RGB image downscaled to at most `size` px a side, as a JPEG data URI, with its size."""
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return (
        f"data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}",
        image.width,
        image.height,
    )


def read_images(path: Path, prompt_ids: list[int]) -> dict[int, bytes]:
    """Image IMAGE_INDEX of each of `prompt_ids` in an image container; ValueError naming the
    file when one is missing."""
    table = conform(
        pq.read_table(path, filters=[("prompt_id", "in", prompt_ids), ("image_index", "=", IMAGE_INDEX)]),
        IMAGES, path,
    )
    images = dict(zip(table["prompt_id"].to_pylist(), table["png"].to_pylist()))
    missing = sorted(set(prompt_ids) - set(images))
    if missing:
        raise ReportInputError(
            f"{path}: no image {IMAGE_INDEX} of prompts {missing}: are the tables and the images of the same run?"
        )
    return images


def read_verdicts(path: Path, profile: str) -> pl.DataFrame:
    """The rows of an IMAGE_FLAGS file for `profile` and image IMAGE_INDEX (errors name the file)."""
    try:
        table = pq.read_table(path, filters=[("profile", "=", profile), ("image_index", "=", IMAGE_INDEX)])
    except (OSError, pa.ArrowException) as error:
        raise SchemaMismatch(f"{path}: not a readable Parquet file ({error})") from None
    return pl.from_arrow(conform(table, IMAGE_FLAGS, path))


def _verdict(value: bool | None) -> str:
    return "unscored" if value is None else ("fired" if value else "did not fire")


def same_seed_grids(
    prompts: pl.DataFrame,
    flags: pl.DataFrame,
    image_path,
    conditions: list[tuple[str, str]],
    profile: str,
    judges: list[str],
    count: int,
    size: int,
) -> list[ModelGrid]:
    """One grid per model of `conditions` ((model, mitigation) pairs, in display order).

    `prompts` has the PROMPTS columns, `flags` the IMAGE_FLAGS columns; `image_path(model,
    mitigation, shard)` is the image container of block 0 of that shard; `judges` are the
    judges `profile` reads (FLAG_JUDGES order). ValueError naming the file when a sampled
    image is missing, or when a shown image has no verdict row.
    """
    if count <= 0 or not conditions:
        return []
    sampled = prompts.filter(pl.col("prompt_id").is_in(sample_prompts(prompts["prompt_id"].to_list(), count)))
    sampled = sampled.sort("prompt_id")
    shards = dict(zip(sampled["prompt_id"].to_list(), sampled["shard"].to_list()))
    verdicts = {
        (row["model"], row["mitigation"], row["prompt_id"]): row
        for row in flags.filter(
            (pl.col("profile") == profile)
            & (pl.col("image_index") == IMAGE_INDEX)
            & pl.col("prompt_id").is_in(list(shards))
        ).iter_rows(named=True)
    }
    images: dict[tuple[str, str, int], bytes] = {}
    for model, mitigation in conditions:
        for shard in sorted(set(shards.values())):
            ids = [prompt_id for prompt_id, s in shards.items() if s == shard]
            found = read_images(Path(image_path(model, mitigation, shard)), ids)
            images.update({(model, mitigation, prompt_id): png for prompt_id, png in found.items()})
    shown = [judge for judge in FLAG_JUDGES if judge in judges]
    grids = []
    for model in dict.fromkeys(model for model, _ in conditions):
        mitigations = tuple(mitigation for name, mitigation in conditions if name == model)
        rows = []
        for prompt in sampled.iter_rows(named=True):
            cells = []
            for mitigation in mitigations:
                key = (model, mitigation, prompt["prompt_id"])
                if key not in verdicts:
                    raise ReportInputError(
                        f"image_flags: no verdict of profile {profile!r} for {model}/{mitigation} "
                        f"prompt {prompt['prompt_id']} image {IMAGE_INDEX}: are the tables those of this run?"
                    )
                verdict = verdicts[key]
                container = Path(image_path(model, mitigation, prompt["shard"]))
                image = decode_png(images[key], container, prompt["prompt_id"], IMAGE_INDEX)
                uri, width, height = data_uri(image, size)
                flagged = {None: "unscored", True: "flagged", False: "not flagged"}[verdict["flagged"]]
                cells.append(
                    GridCell(mitigation, uri, width, height, flagged,
                             tuple(Verdict(JUDGES[j].display_name, _verdict(verdict[j])) for j in shown),
                             verdict["degenerate"])
                )
            rows.append(
                GridRow(prompt["prompt_id"], prompt["text"], ", ".join(prompt["categories"] or []) or "none",
                        image_seed(prompt["seed"], IMAGE_INDEX), tuple(cells))
            )
        grids.append(ModelGrid(model, mitigations, tuple(rows)))
    return grids
