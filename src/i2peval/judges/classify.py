"""Stage 4: raw scores of every configured judge for every image of one generate job.

Nothing is thresholded here: the table keeps each judge's raw scores (Q16's
p(inappropriate), each NudeNet's max score per label, the safety checker's verdict and
concept margins, the CLIP cosine of image and prompt), so any judge profile can be applied
at aggregation without classifying again. Columns of judges the configuration does not run
stay null.

The job first checks that the image container and the manifest hold exactly the images of
its shard and block, and every judge's files against the sha256 in their records; it loads
each judge's weights once (Q16 and CLIPScore share one CLIP) and decodes each image once
for all judges (`batch.ImageBatch`). Each finished batch of scores is saved as a part
(`parts.JobParts`), so a killed job resumes with the batches it had not finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from i2peval.devices import compute_device
from i2peval.errors import I2PEvalError
from i2peval.generation.imagestore import IMAGE_KEY, check_image_container, iter_image_batches
from i2peval.hub import sha256_of
from i2peval.judges.assets import verify_asset_files
from i2peval.judges.batch import ImageBatch
from i2peval.judges.judge import JudgeLoading, Scorer
from i2peval.judges.registry import JUDGES, SCORES
from i2peval.parts import JobParts, RowsMismatch, check_keys
from i2peval.schemas import MANIFEST, SET_COLUMN, read_columns, write_table

log = logging.getLogger(__name__)


class JudgeFailure(I2PEvalError):
    """A judge returned something that is not a score."""


def load_judges(
    judges: Sequence[str],
    assets: dict[str, tuple[Path, dict[str, Any]]],
    device: torch.device,
    dtype: str = "float32",
) -> list[Scorer]:
    """The configured judges, in registry order, each loaded once; `assets` maps each asset
    a judge loads to its record's path and content; the torch judges' encoders run in `dtype`."""
    unknown = sorted(set(judges) - set(JUDGES))
    if unknown:
        raise ValueError(f"unknown judges {unknown}; known: {list(JUDGES)}")
    shared: dict[str, Any] = {}
    return [
        judge.load(JudgeLoading(*assets[judge.asset], device, shared, dtype))
        for name, judge in JUDGES.items()
        if name in judges
    ]


def _checked(judge: str, scores: dict[str, Sequence], batch: ImageBatch, images_path: Path) -> dict[str, list]:
    fields = JUDGES[judge].score_fields
    expected = [field.name for field in fields]
    if sorted(scores) != sorted(expected):
        raise JudgeFailure(f"{images_path}: judge {judge} returned columns {sorted(scores)}, expected {expected}")
    checked = {}
    for field in fields:
        values = list(scores[field.name])
        if len(values) != len(batch):
            raise JudgeFailure(
                f"{images_path}: judge {judge} returned {len(values)} {field.name} for {len(batch)} images"
            )
        for key, value in zip(batch.keys(), values):
            valid = isinstance(value, bool) if pa.types.is_boolean(field.type) else math.isfinite(value)
            if not valid:
                raise JudgeFailure(f"{images_path}: image {key} got {field.name} = {value}")
        checked[field.name] = values
    return checked


def score_batch(
    batch: ImageBatch, judges: Sequence[Scorer], job: ScoredJob, images_path: Path
) -> pa.Table:
    """SCORES rows of one batch of `job`; `JudgeFailure` on a score that is not finite."""
    columns: dict[str, list] = {
        SET_COLUMN: [job.prompt_set] * len(batch),
        "model": [job.model] * len(batch),
        "mitigation": [job.mitigation] * len(batch),
        "prompt_id": batch.prompt_ids,
        "image_index": batch.image_indices,
    }
    for judge in judges:
        columns.update(_checked(judge.name, judge.score_batch(batch), batch, images_path))
    for name in SCORES.names:
        columns.setdefault(name, [None] * len(batch))
    return pa.table(columns, schema=SCORES)


def decoded_batches(
    images_path: Path, texts: dict[tuple[int, int], str], done: set[tuple], batch_size: int, threads: int
) -> Iterator[ImageBatch]:
    """The container's batches of images not in `done`, each decoded in `threads` threads
    while the batch before it is judged; a damaged image raises when its batch's turn comes,
    after the batches before it are saved."""
    with (
        ThreadPoolExecutor(1, thread_name_prefix="prefetch") as prefetch,
        ThreadPoolExecutor(threads, thread_name_prefix="decode") as decoders,
    ):
        upcoming: Future[ImageBatch] | None = None
        for prompt_ids, image_indices, pngs in iter_image_batches(images_path, batch_size):
            pending = [i for i, key in enumerate(zip(prompt_ids, image_indices)) if key not in done]
            if not pending:
                continue
            keys = [(prompt_ids[i], image_indices[i]) for i in pending]
            decoding = prefetch.submit(
                ImageBatch.decode,
                [key[0] for key in keys],
                [key[1] for key in keys],
                [pngs[i] for i in pending],
                [texts[key] for key in keys],
                images_path,
                decoders,
            )
            if upcoming is not None:
                yield upcoming.result()
            upcoming = decoding
        if upcoming is not None:
            yield upcoming.result()


def score_images(
    images_path: Path,
    texts: dict[tuple[int, int], str],
    parts: JobParts,
    job: ScoredJob,
    judges: Sequence[Scorer],
    batch_size: int,
    threads: int = 1,
) -> None:
    """Score every image of the container not yet saved in `parts`, batch by batch (the
    next batch decoding in `threads` threads meanwhile)."""
    done = parts.completed()
    total = len(parts.expected)
    scored = len(done)
    started = time.perf_counter()
    for batch in decoded_batches(images_path, texts, done, batch_size, threads):
        parts.add(score_batch(batch, judges, job, images_path))
        scored += len(batch)
        log.info(
            "%d/%d images scored, %.1f images/s", scored, total,
            (scored - len(done)) / (time.perf_counter() - started),
        )


@dataclass(frozen=True)
class ScoredJob:
    """Whose images a classify job scores: the generate job's prompt set, model and mitigation."""

    prompt_set: str
    model: str
    mitigation: str


def read_texts(
    manifest_path: Path, expected: Iterable[tuple[int, int]], prompt_set: str
) -> dict[tuple[int, int], str]:
    """{(prompt_id, image_index): the text the model saw} from a generate job's manifest,
    which must describe exactly the `expected` images, of the prompt set `prompt_set`."""
    table = read_columns(manifest_path, MANIFEST, [SET_COLUMN, "prompt_id", "image_index", "text"])
    found = sorted(set(table[SET_COLUMN].to_pylist()))
    if found and found != [prompt_set]:
        raise RowsMismatch(f"{manifest_path}: its images are of the prompt set {found}, this job's is {prompt_set!r}")
    keys = list(zip(table["prompt_id"].to_pylist(), table["image_index"].to_pylist()))
    check_keys(manifest_path, keys, expected, "images")
    return dict(zip(keys, table["text"].to_pylist()))


def run_classify_job(
    images_path: Path,
    manifest_path: Path,
    expected: Iterable[tuple[int, int]],
    job: ScoredJob,
    judges: Sequence[str],
    assets: dict[str, tuple[Path, dict[str, Any]]],
    scores_path: Path,
    device: str = "auto",
    batch_size: int = 32,
    lock_dir: Path = Path(".gpu-locks"),
    threads: int = 1,
    dtype: str = "float32",
) -> int:
    """Score one job's images with `judges` and write the scores table; return the image count.

    `expected` holds the (prompt_id, image_index) the container must hold, exactly; `assets`
    maps each asset the judges load to its record's path and content; `dtype` is the study's
    ``judge_dtype``.
    """
    expected = sorted(expected)
    check_image_container(images_path, expected)
    texts = read_texts(manifest_path, expected, job.prompt_set)
    needed = {JUDGES[judge].asset for judge in judges}
    parts = JobParts(
        scores_path,
        SCORES,
        IMAGE_KEY,
        expected,
        settings={
            "prompt_set": job.prompt_set,
            "model": job.model,
            "mitigation": job.mitigation,
            "images_sha256": sha256_of(images_path),
            "texts_sha256": hashlib.sha256(json.dumps(sorted(texts.items())).encode()).hexdigest(),
            "judges": sorted(judges),
            "judge_dtype": dtype,
            "assets": {asset: record for asset, (_, record) in sorted(assets.items()) if asset in needed},
        },
    )
    if len(parts.completed()) < len(expected):
        for asset in sorted(needed):
            record_file, record = assets[asset]
            verify_asset_files(asset, record, record_file)
        torch.set_num_threads(threads)
        with compute_device(device, lock_dir) as job_device:
            loaded = load_judges(judges, assets, job_device.torch, dtype)
            score_images(images_path, texts, parts, job, loaded, batch_size, threads)
    table = parts.finish()
    write_table(table, scores_path, SCORES)
    parts.discard()
    return table.num_rows
