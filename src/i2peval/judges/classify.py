"""Stage 4: raw classifier scores for every image of one generate job.

Nothing is thresholded here: the table keeps Q16's p(inappropriate) and NudeNet's max
score per label, so any judge profile can be applied at aggregation without
reclassifying. The job first checks that the image container holds exactly the images
of its shard and block, and the judges' weights against their recorded hashes; each
finished batch of scores is saved as a part (`parts.JobParts`), so a killed job resumes
with the batches it had not finished.
"""

from __future__ import annotations

import io
import logging
import math
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import torch
from PIL import Image

from i2peval.devices import compute_device
from i2peval.errors import I2PEvalError
from i2peval.generation.imagestore import (
    IMAGE_KEY,
    check_image_container,
    iter_image_batches,
)
from i2peval.hub import sha256_of
from i2peval.judges.nudenet3 import NudeNetScorer
from i2peval.judges.q16 import Q16Classifier, verify_q16_assets
from i2peval.parts import JobParts
from i2peval.schemas import NUDENET_LABELS, SCORES, nudenet_column, write_table

log = logging.getLogger(__name__)


class JudgeFailure(I2PEvalError):
    """A judge returned something that is not a score."""


def score_batch(
    prompt_ids: list[int],
    image_indices: list[int],
    pngs: list[bytes],
    model: str,
    mitigation: str,
    q16: Q16Classifier,
    nudenet: NudeNetScorer,
    images_path: Path,
) -> pa.Table:
    """SCORES rows of one batch of images; `JudgeFailure` on a score that is not finite."""
    images = [Image.open(io.BytesIO(png)).convert("RGB") for png in pngs]
    columns: dict[str, list] = {
        "model": [model] * len(pngs),
        "mitigation": [mitigation] * len(pngs),
        "prompt_id": prompt_ids,
        "image_index": image_indices,
        "q16_p_inappropriate": q16.probabilities(images).tolist(),
        **{nudenet_column(label): [] for label in NUDENET_LABELS},
    }
    for png in pngs:
        scores = nudenet.scores(png)
        for label in NUDENET_LABELS:
            columns[nudenet_column(label)].append(scores[label])
    for name, values in columns.items():
        if name.startswith(("q16_", "nudenet_")):
            for key, value in zip(zip(prompt_ids, image_indices), values):
                if not math.isfinite(value):
                    raise JudgeFailure(f"{images_path}: image {key} got {name} = {value}")
    return pa.table(columns, schema=SCORES)


def score_images(
    images_path: Path,
    parts: JobParts,
    model: str,
    mitigation: str,
    q16: Q16Classifier,
    nudenet: NudeNetScorer,
    batch_size: int,
) -> None:
    """Score every image of the container not yet saved in `parts`, batch by batch."""
    done = parts.completed()
    total = len(parts.expected)
    scored = len(done)
    started = time.perf_counter()
    for prompt_ids, image_indices, pngs in iter_image_batches(images_path, batch_size):
        pending = [i for i, key in enumerate(zip(prompt_ids, image_indices)) if key not in done]
        if not pending:
            continue
        parts.add(
            score_batch(
                [prompt_ids[i] for i in pending],
                [image_indices[i] for i in pending],
                [pngs[i] for i in pending],
                model, mitigation, q16, nudenet, images_path,
            )
        )
        scored += len(pending)
        log.info(
            "%d/%d images scored, %.1f images/s", scored, total,
            (scored - len(done)) / (time.perf_counter() - started),
        )


def run_classify_job(
    images_path: Path,
    expected: Iterable[tuple[int, int]],
    model: str,
    mitigation: str,
    q16_record: dict[str, Any],
    q16_record_path: Path,
    q16_weights: Path,
    q16_prompts: Path,
    scores_path: Path,
    device: str = "auto",
    batch_size: int = 32,
    lock_dir: Path = Path(".gpu-locks"),
    threads: int = 1,
) -> int:
    """Score one job's images and write the scores table; return the image count.

    `expected` holds the (prompt_id, image_index) the container must hold, exactly.
    """
    expected = sorted(expected)
    check_image_container(images_path, expected)
    parts = JobParts(
        scores_path,
        SCORES,
        IMAGE_KEY,
        expected,
        settings={
            "model": model,
            "mitigation": mitigation,
            "images_sha256": sha256_of(images_path),
            "q16": q16_record,
            "nudenet": version("nudenet"),
        },
    )
    if len(parts.completed()) < len(expected):
        verify_q16_assets(q16_record, q16_record_path, q16_weights, q16_prompts)
        torch.set_num_threads(threads)
        with compute_device(device, lock_dir) as job_device:
            q16 = Q16Classifier(q16_record["architecture"], q16_weights, q16_prompts, job_device.torch)
            nudenet = NudeNetScorer(use_cuda=job_device.torch.type == "cuda")
            score_images(images_path, parts, model, mitigation, q16, nudenet, batch_size)
    table = parts.finish()
    write_table(table, scores_path, SCORES)
    parts.discard()
    return table.num_rows
