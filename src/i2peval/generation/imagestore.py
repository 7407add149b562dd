"""The image container of a generate job, written so that a killed job loses nothing done.

While a job runs, each finished batch is written as its own small Parquet file in a
``<images>.parts/`` folder (temp file + rename, so a part is whole or absent), next to
a fingerprint of the settings that made it. A rerun with the same fingerprint skips the
images those parts hold; a different fingerprint discards them. `finish` joins the
parts into the job's two outputs: the images (PNG bytes) and the manifest (what made
each image), then removes the folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from i2peval.schemas import IMAGES, MANIFEST, write_table

PART_SCHEMA = pa.schema(list(MANIFEST) + [IMAGES.field("png")])


def fingerprint(settings: dict[str, Any]) -> str:
    """Stable hash of JSON-serialisable settings."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


class ShardImageWriter:
    """Collects one job's images in resumable parts, then writes the final container."""

    def __init__(self, images_path: str | Path, manifest_path: str | Path, settings: dict[str, Any]):
        self.images_path = Path(images_path)
        self.manifest_path = Path(manifest_path)
        self.parts_dir = self.images_path.with_name(self.images_path.name + ".parts")
        self._fingerprint = fingerprint(settings)
        self._prepare_parts_dir()

    def _prepare_parts_dir(self) -> None:
        stamp = self.parts_dir / "settings.sha256"
        if self.parts_dir.exists() and (
            not stamp.exists() or stamp.read_text().strip() != self._fingerprint
        ):
            shutil.rmtree(self.parts_dir)
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(self._fingerprint)

    def _parts(self) -> list[Path]:
        return sorted(self.parts_dir.glob("part-*.parquet"))

    def completed(self) -> set[tuple[int, int]]:
        """(prompt_id, image_index) of every image already saved by an earlier attempt."""
        done = set()
        for part in self._parts():
            table = pq.read_table(part, columns=["prompt_id", "image_index"])
            done.update(zip(table["prompt_id"].to_pylist(), table["image_index"].to_pylist()))
        return done

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Save one batch of rows (manifest columns plus ``png``) as a new part."""
        index = len(self._parts())
        part = self.parts_dir / f"part-{index:06d}.parquet"
        partial = part.with_name(part.name + ".tmp")
        pq.write_table(pa.Table.from_pylist(rows, schema=PART_SCHEMA), partial)
        partial.replace(part)

    def finish(self) -> int:
        """Write images and manifest sorted by (prompt_id, image_index); return the image count."""
        parts = self._parts()
        table = (
            pa.concat_tables([pq.read_table(part) for part in parts])
            if parts
            else PART_SCHEMA.empty_table()
        )
        table = table.sort_by([("prompt_id", "ascending"), ("image_index", "ascending")])
        write_table(table.select(MANIFEST.names), self.manifest_path, MANIFEST)
        write_table(table.select(IMAGES.names), self.images_path, IMAGES)
        shutil.rmtree(self.parts_dir)
        return table.num_rows


def iter_image_batches(path: str | Path, batch_size: int):
    """Yield ``(prompt_ids, image_indices, pngs)`` lists from an image container."""
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=batch_size, columns=IMAGES.names):
        yield (
            batch.column("prompt_id").to_pylist(),
            batch.column("image_index").to_pylist(),
            batch.column("png").to_pylist(),
        )
