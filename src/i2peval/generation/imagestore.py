"""The image container of a generate job, written so that a killed job loses nothing done.

A job saves each finished batch as a part (`parts.JobParts`); `ShardImageWriter.finish`
joins the parts into the job's two outputs, the images (PNG bytes) and the manifest (what
made each image), only when they hold exactly the images the job was asked for. Readers
check a container against the images they expect with `check_image_container`
(`parts.RowsMismatch` otherwise).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from i2peval.errors import I2PEvalError
from i2peval.parts import JobParts, check_keys
from i2peval.schemas import IMAGES, MANIFEST, read_columns, write_table


class DamagedImage(I2PEvalError):
    """A stored image that cannot be decoded."""


def decode_png(png: bytes, container: Path, prompt_id: int, image_index: int) -> Image.Image:
    """One stored image as an RGB image (any other mode converted, alpha dropped);
    `DamagedImage` naming its container, prompt and index when it cannot be decoded."""
    try:
        with Image.open(io.BytesIO(png)) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DamagedImage(
            f"{container}: image {image_index} of prompt {prompt_id} cannot be decoded ({error}): delete "
            f"{container} and run the workflow again to make its images again"
        ) from None


PART_SCHEMA = pa.schema(list(MANIFEST) + [IMAGES.field("png")])
IMAGE_KEY = ("prompt_id", "image_index")


class ShardImageWriter:
    """Collects one job's images in resumable parts, then writes the final container."""

    def __init__(
        self,
        images_path: str | Path,
        manifest_path: str | Path,
        expected: Iterable[tuple[int, int]],
        settings: dict[str, Any],
    ):
        self.images_path = Path(images_path)
        self.manifest_path = Path(manifest_path)
        self.parts = JobParts(self.images_path, PART_SCHEMA, IMAGE_KEY, expected, settings)
        self.parts_dir = self.parts.parts_dir

    def completed(self) -> set[tuple[int, int]]:
        """(prompt_id, image_index) of every image already saved."""
        return self.parts.completed()

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Save one batch of rows (manifest columns plus ``png``) as a new part."""
        self.parts.add(rows)

    def finish(self) -> int:
        """Write images and manifest sorted by (prompt_id, image_index); return the image count."""
        table = self.parts.finish()
        write_table(table.select(MANIFEST.names), self.manifest_path, MANIFEST)
        write_table(table.select(IMAGES.names), self.images_path, IMAGES)
        self.parts.discard()
        return table.num_rows


def check_image_container(path: str | Path, expected: Iterable[tuple[int, int]]) -> None:
    """Check that an image container is readable and holds exactly the `expected` images."""
    table = read_columns(path, IMAGES, list(IMAGE_KEY))
    check_keys(path, list(zip(table["prompt_id"].to_pylist(), table["image_index"].to_pylist())), expected, "images")


def iter_image_batches(path: str | Path, batch_size: int):
    """Yield ``(prompt_ids, image_indices, pngs)`` lists from an image container."""
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=batch_size, columns=IMAGES.names):
        yield (
            batch.column("prompt_id").to_pylist(),
            batch.column("image_index").to_pylist(),
            batch.column("png").to_pylist(),
        )
