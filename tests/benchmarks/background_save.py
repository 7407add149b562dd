"""Benchmark: a generate job's images per second with each batch encoded and saved
inline (the baseline, measured in the same run) and in the background while the next
batch is made (`imagestore.BackgroundSaver`, what generate jobs do).

Both ways run the job's own loop pieces on one snapshot: `generate.generate_batch`, PNG
encoding (`imagestore.encode_png`) and a `ShardImageWriter` writing resumable parts. The
stored images are checked to be byte-identical between the two ways. Default: a tiny
random SD snapshot on the CPU with one torch thread, so that encoding can use another
core as it uses spare CPU cores beside a GPU. On the CPU generation dominates (a tiny
model at 256 px takes seconds per image, encoding 256 px takes milliseconds), so the
two ways tie; what the background saves shows with `--snapshot` and `--device cuda`:
encoding a 512 px image takes Pillow 65-98 ms on one core (tests/benchmarks/png_levels.py),
a third to a half of the 0.2 s in which an H100 at 40 % MFU makes one with SD 1.x.
Prints a table and ends with one JSON line.

    python tests/benchmarks/background_save.py --size 256 --batches 3 --batch-size 2 --steps 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

from i2peval.generation.engine import Engine
from i2peval.generation.generate import GenerationSettings, ImageRequest, generate_batch
from i2peval.generation.imagestore import BackgroundSaver, ShardImageWriter, encode_png
from i2peval.generation.latent_models import load_latent_model
from i2peval.generation.mitigations import HARNESS_CONCEPT, resolve_mitigation
from i2peval.models.tiny import build_tiny_pipeline

ROW = {"model": "bench", "model_commit": "local:tiny", "mitigation": "none", "mitigation_settings": "{}",
       "steps": 0, "guidance_scale": 7.5, "width": 0, "height": 0, "dtype": "float32", "device": "cpu",
       "code_version": "bench", "seconds": 0.0}


def run(way: str, engine: Engine, batches: list[list[ImageRequest]], settings: GenerationSettings,
        folder: Path) -> tuple[float, bytes]:
    """(seconds, the stored images' bytes) of making and saving `batches` the `way` given."""
    expected = [(request.prompt_id, request.image_index) for batch in batches for request in batch]
    writer = ShardImageWriter(folder / "images.parquet", folder / "manifest.parquet", expected, {"way": way})
    started = time.perf_counter()

    def rows_of(batch):
        return [{**ROW, "prompt_id": r.prompt_id, "image_index": r.image_index, "seed": r.seed, "text": r.text}
                for r in batch]

    if way == "inline":
        for batch in batches:
            images = generate_batch(engine, batch, settings)
            writer.add([{**row, "png": encode_png(made.image)} for row, made in zip(rows_of(batch), images)])
    else:
        with BackgroundSaver(writer) as saver:
            for batch in batches:
                images = generate_batch(engine, batch, settings)
                saver.save(rows_of(batch), [made.image for made in images])
    seconds = time.perf_counter() - started
    writer.finish()
    return seconds, pq.read_table(folder / "images.parquet").column("png").to_pylist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", type=Path, help="a Stable Diffusion snapshot folder (default: a tiny random one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        snapshot = args.snapshot
        if snapshot is None:
            snapshot = Path(tmp) / "tiny"
            build_tiny_pipeline(snapshot, seed=0, scheduler="pndm", architecture="sd")
        model = load_latent_model(snapshot, torch.float32, torch.device(args.device))
        engine = Engine.for_mitigation(model, resolve_mitigation("none", {"kind": "none"}, HARNESS_CONCEPT), 7.5)
        settings = GenerationSettings(steps=args.steps, guidance_scale=7.5, resolution=args.size, dtype="float32")
        batches = [[ImageRequest(b * args.batch_size + i, 0, f"a lighthouse number {b * args.batch_size + i}",
                                 1000 + b * args.batch_size + i) for i in range(args.batch_size)]
                   for b in range(args.batches)]
        generate_batch(engine, batches[0][:1], settings)  # warm-up
        results = {way: run(way, engine, batches, settings, Path(tmp) / way) for way in ("inline", "background")}

    images = args.batches * args.batch_size
    assert results["inline"][1] == results["background"][1], "the two ways stored different images"
    print(f"{'way':<11} {'seconds':>8} {'images/s':>9}")
    for way, (seconds, _) in results.items():
        print(f"{way:<11} {seconds:>8.2f} {images / seconds:>9.2f}")
    speedup = results["inline"][0] / results["background"][0]
    print(f"background / inline speed: {speedup:.2f}x")
    print(json.dumps({"benchmark": "background_save", "device": args.device, "size": args.size, "steps": args.steps,
                      "images": images, "batch": args.batch_size, "torch_threads": args.threads,
                      "inline_images_per_s": round(images / results["inline"][0], 3),
                      "background_images_per_s": round(images / results["background"][0], 3),
                      "speedup": round(speedup, 3)}))


if __name__ == "__main__":
    main()
