"""The image container of a generate job, written so that a killed job loses nothing done.

A job saves each finished batch as a part (`parts.JobParts`); `ShardImageWriter.finish`
joins the parts into the job's two outputs, the images (PNG bytes) and the manifest (what
made each image), only when they hold exactly the images the job was asked for. Readers
check a container against the images they expect with `check_image_container`
(`parts.RowsMismatch` otherwise).

`BackgroundSaver` encodes and saves a batch on worker threads while the job makes the
next one, so the accelerator never waits for PNG encoding (zlib releases the GIL).
Images are PNG at zlib level 6, Pillow's default: tests/benchmarks/png_levels.py
measured level 1 at 0.21-0.85 of its time for 6-24 % more bytes; with encoding off the
critical path, time is cheaper than the study's disk.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
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


PNG_COMPRESS_LEVEL = 6


def encode_png(image: Image.Image) -> bytes:
    """Lossless PNG encoding of an image."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


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


class BackgroundSaver:
    """Saves batches to a `ShardImageWriter` in the order given, off the caller's thread:
    each image is encoded on one of `encoders` threads, then the batch is written as one
    part by a saving thread. At most one batch waits while one is written and the caller
    makes the next; an error of a save is raised by the next `save` or by `close`. Use
    as a context manager: leaving it waits until every queued batch is saved (on an error
    too, so work done is not lost), except on Ctrl-C, which loses only the work in flight."""

    def __init__(self, writer: ShardImageWriter, encoders: int = 2):
        self.writer = writer
        self._encoders = ThreadPoolExecutor(encoders, thread_name_prefix="png")
        self._batches: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        # a daemon thread: a job interrupted while a batch is written must still exit
        self._thread = threading.Thread(target=self._save_batches, name="save", daemon=True)
        self._thread.start()

    def save(self, rows: list[dict[str, Any]], images: list[Image.Image]) -> None:
        """Queue one batch: `rows` (manifest columns) with the PNG of each of `images`."""
        self._raise_error()
        pngs = [self._encoders.submit(encode_png, image) for image in images]
        self._batches.put((rows, pngs))

    def _save_batches(self) -> None:
        while (batch := self._batches.get()) is not None:
            rows, pngs = batch
            try:
                if self._error is None:
                    self.writer.add([{**row, "png": png.result()} for row, png in zip(rows, pngs, strict=True)])
            except BaseException as error:  # raised in the caller's thread by the next save or close
                self._error = error
            finally:
                self._batches.task_done()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def wait(self) -> None:
        """Wait until every queued batch is saved; raise the error of a save that failed."""
        self._batches.join()
        self._raise_error()

    def close(self) -> None:
        """`wait`, then stop the threads."""
        try:
            self.wait()
        finally:
            self._batches.put(None)
            self._encoders.shutdown()

    def __enter__(self) -> BackgroundSaver:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is KeyboardInterrupt:
            self._encoders.shutdown(wait=False, cancel_futures=True)
            return
        self.close()


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
