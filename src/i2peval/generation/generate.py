"""Stage 3: the images of one job (a shard of prompts x a block of image indices).

Images are generated in batches that mix prompts; image ``i`` of a prompt always
starts from the latents of `seeds.image_seed` so batching never changes an image.
Each finished batch is saved at once (`imagestore.ShardImageWriter`), so a job that
dies resumes where it stopped, making the same batches it would have made. The model's
files are checked against their recorded hashes before they are loaded.
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import torch

from i2peval.devices import compute_device, torch_dtype
from i2peval.generation.imagestore import ShardImageWriter
from i2peval.generation.mitigations import Mitigation
from i2peval.generation.models import build_pipeline, load_text_to_image
from i2peval.generation.seeds import image_generators, image_seed
from i2peval.generation.snapshots import (
    model_commit_label,
    read_model_record,
    verify_snapshot,
)
from i2peval.provenance import code_version
from i2peval.schemas import PROMPTS, read_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationSettings:
    """What determines the images besides model, mitigation, prompt and seed."""

    steps: int
    guidance_scale: float
    resolution: int
    dtype: str


@dataclass(frozen=True)
class ImageRequest:
    """One image to make."""

    prompt_id: int
    image_index: int
    text: str
    seed: int


def image_requests(prompts: pa.Table, image_indices: Sequence[int]) -> list[ImageRequest]:
    """Every (prompt, image index) pair of a job, prompt-major, with its seed."""
    return [
        ImageRequest(prompt_id, index, text, image_seed(seed, index))
        for prompt_id, text, seed in zip(
            prompts["prompt_id"].to_pylist(), prompts["text"].to_pylist(), prompts["seed"].to_pylist()
        )
        for index in image_indices
    ]


def png_bytes(image) -> bytes:
    """Lossless PNG encoding of a PIL image."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def generate_batch(pipeline, mitigation: Mitigation, batch: list[ImageRequest], settings: GenerationSettings):
    """PIL images for one batch of requests."""
    return pipeline(
        [request.text for request in batch],
        height=settings.resolution,
        width=settings.resolution,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        generator=image_generators([request.seed for request in batch]),
        **mitigation.call_arguments(len(batch)),
    ).images


def pending_batches(
    requests: list[ImageRequest], done: set[tuple[int, int]], batch_size: int
) -> list[list[ImageRequest]]:
    """The job's batches that still have images to make, without the images already saved.

    Batches are cut from the whole request list, so a resumed job makes the same batches,
    and so the same pixels, as an uninterrupted one.
    """
    batches = []
    for start in range(0, len(requests), batch_size):
        pending = [
            request
            for request in requests[start : start + batch_size]
            if (request.prompt_id, request.image_index) not in done
        ]
        if pending:
            batches.append(pending)
    return batches


def generate_requests(
    pipeline,
    mitigation: Mitigation,
    batches: list[list[ImageRequest]],
    settings: GenerationSettings,
    writer: ShardImageWriter,
    context: dict[str, Any],
) -> None:
    """Generate `batches` one by one, saving each to `writer`, logging progress."""
    started = time.perf_counter()
    total = sum(len(batch) for batch in batches)
    made = 0
    for batch in batches:
        batch_started = time.perf_counter()
        images = generate_batch(pipeline, mitigation, batch, settings)
        seconds = (time.perf_counter() - batch_started) / len(batch)
        writer.add(
            [
                {
                    **context,
                    "prompt_id": request.prompt_id,
                    "image_index": request.image_index,
                    "seed": request.seed,
                    "text": request.text,
                    "seconds": seconds,
                    "png": png_bytes(image),
                }
                for request, image in zip(batch, images)
            ]
        )
        made += len(batch)
        rate = made / (time.perf_counter() - started)
        log.info(
            "%d/%d images (%.0f%%), %.2f images/s, about %.0f s left",
            made, total, 100 * made / total, rate, (total - made) / rate,
        )


def run_generate_job(
    prompts_path: Path,
    snapshot_dir: Path,
    model_record_path: Path,
    model_name: str,
    mitigation: Mitigation,
    settings: GenerationSettings,
    image_indices: Sequence[int],
    images_path: Path,
    manifest_path: Path,
    device: str = "auto",
    batch_size: int = 8,
    lock_dir: Path = Path(".gpu-locks"),
    threads: int = 1,
) -> int:
    """Generate every image of one job and write its container and manifest; return the count.

    Images saved by an earlier, interrupted attempt with the same settings are kept.
    """
    prompts = read_table(prompts_path, PROMPTS)
    requests = image_requests(prompts, image_indices)
    record = read_model_record(model_record_path)
    writer = ShardImageWriter(
        images_path,
        manifest_path,
        expected=[(request.prompt_id, request.image_index) for request in requests],
        settings={
            "model": model_name,
            "model_record": record,
            "mitigation": mitigation.settings(),
            "generation": asdict(settings),
            "requests": [asdict(request) for request in requests],
        },
    )
    batches = pending_batches(requests, writer.completed(), batch_size)
    pending = sum(len(batch) for batch in batches)
    if pending < len(requests):
        log.info("resuming: %d of %d images already saved", len(requests) - pending, len(requests))
    torch.set_num_threads(threads)
    with compute_device(device, lock_dir) as job_device:
        log.info(
            "%s / %s: %d images to make on %s (GPU assignment: %s)",
            model_name, mitigation.name, pending, job_device.torch, job_device.gpu,
        )
        if batches:
            verify_snapshot(snapshot_dir, record, model_record_path)
            base = load_text_to_image(snapshot_dir, torch_dtype(settings.dtype), job_device.torch)
            context = {
                "model": model_name,
                "model_commit": model_commit_label(record),
                "mitigation": mitigation.name,
                "mitigation_settings": json.dumps(mitigation.settings(), sort_keys=True),
                "steps": settings.steps,
                "guidance_scale": settings.guidance_scale,
                "width": settings.resolution,
                "height": settings.resolution,
                "dtype": settings.dtype,
                "device": str(job_device.torch),
                "gpu_assignment": job_device.gpu,
                "code_version": code_version(),
            }
            generate_requests(build_pipeline(base, mitigation), mitigation, batches, settings, writer, context)
    return writer.finish()
