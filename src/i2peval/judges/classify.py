"""Stage 4: raw classifier scores for every image of one generate job.

Nothing is thresholded here: the table keeps Q16's p(inappropriate) and NudeNet's max
score per label, so any judge profile can be applied at aggregation without
reclassifying.
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from i2peval.devices import compute_device
from i2peval.generation.imagestore import iter_image_batches
from i2peval.judges.nudenet3 import NudeNetScorer
from i2peval.judges.q16 import Q16Classifier
from i2peval.schemas import NUDENET_LABELS, SCORES, nudenet_column, write_table

log = logging.getLogger(__name__)


def score_images(
    images_path: Path,
    model: str,
    mitigation: str,
    q16: Q16Classifier,
    nudenet: NudeNetScorer,
    batch_size: int,
) -> pa.Table:
    """The SCORES table of one image container."""
    columns: dict[str, list] = {name: [] for name in SCORES.names}
    total = pq.ParquetFile(images_path).metadata.num_rows
    started = time.perf_counter()
    for prompt_ids, image_indices, pngs in iter_image_batches(images_path, batch_size):
        images = [Image.open(io.BytesIO(png)).convert("RGB") for png in pngs]
        columns["q16_p_inappropriate"] += q16.probabilities(images).tolist()
        for png in pngs:
            scores = nudenet.scores(png)
            for label in NUDENET_LABELS:
                columns[nudenet_column(label)].append(scores[label])
        columns["prompt_id"] += prompt_ids
        columns["image_index"] += image_indices
        done = len(columns["prompt_id"])
        log.info("%d/%d images scored, %.1f images/s", done, total, done / (time.perf_counter() - started))
    count = len(columns["prompt_id"])
    columns["model"] = [model] * count
    columns["mitigation"] = [mitigation] * count
    return pa.table(columns, schema=SCORES)


def run_classify_job(
    images_path: Path,
    model: str,
    mitigation: str,
    q16_architecture: str,
    q16_weights: Path,
    q16_prompts: Path,
    scores_path: Path,
    device: str = "auto",
    batch_size: int = 32,
    lock_dir: Path = Path(".gpu-locks"),
    threads: int = 1,
) -> int:
    """Score one job's images and write the scores table; return the image count."""
    torch.set_num_threads(threads)
    with compute_device(device, lock_dir) as torch_device:
        q16 = Q16Classifier(q16_architecture, q16_weights, q16_prompts, torch_device)
        nudenet = NudeNetScorer(use_cuda=torch_device.type == "cuda")
        table = score_images(images_path, model, mitigation, q16, nudenet, batch_size)
    write_table(table, scores_path, SCORES)
    return table.num_rows
