"""Benchmark: what each zlib compression level costs to encode a generated image as PNG,
and what it saves in bytes, against Pillow's default (level 6) in the same run.

A generate job encodes every image it makes (generation/generate.py, `png_bytes`), on a
background thread while the next batch is denoised: the level decides how long that
thread needs per image and how large the image containers grow. Decoded pixels are the
same at every level (checked here), so the judges see the same images.

Content: no photograph can be downloaded where this runs, so two synthetic kinds bracket
what a diffusion model makes: "smooth" (random 16 x 16 colours upsampled bicubically, a
lower bound on entropy) and "textured" (the same plus Gaussian noise of standard
deviation 8 levels, the fine grain of generated images). Prints a table and ends with
one JSON line. Run with `python tests/benchmarks/png_levels.py --size 512 --images 8`.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time

import numpy as np
from PIL import Image

LEVELS = range(10)
BASELINE = 6  # Pillow's default (zlib's)


def images(kind: str, size: int, count: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    made = []
    for _ in range(count):
        small = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        pixels = np.asarray(small.resize((size, size), Image.BICUBIC), dtype=np.float64)
        if kind == "textured":
            pixels = pixels + rng.normal(0, 8, pixels.shape)
        made.append(Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)))
    return made


def encode(image: Image.Image, level: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def measure(batch: list[Image.Image], level: int, repeats: int) -> tuple[float, float]:
    """(seconds per image, best of `repeats`; bytes per image), each image checked to decode to itself."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        encoded = [encode(image, level) for image in batch]
        best = min(best, (time.perf_counter() - started) / len(batch))
    for image, png in zip(batch, encoded, strict=True):
        with Image.open(io.BytesIO(png)) as decoded:
            assert np.array_equal(np.asarray(decoded), np.asarray(image)), f"level {level} changed the pixels"
    return best, sum(map(len, encoded)) / len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    results = {}
    print(f"{'content':<9} {'level':>5} {'ms/image':>9} {'KiB/image':>10} {'time vs 6':>10} {'bytes vs 6':>11}")
    for kind in ("smooth", "textured"):
        batch = images(kind, args.size, args.images)
        rows = {level: measure(batch, level, args.repeats) for level in LEVELS}
        base_seconds, base_bytes = rows[BASELINE]
        for level, (seconds, size) in rows.items():
            print(f"{kind:<9} {level:>5} {seconds * 1e3:>9.1f} {size / 1024:>10.1f} "
                  f"{seconds / base_seconds:>10.2f} {size / base_bytes:>11.2f}")
        results[kind] = {
            str(level): {"ms_per_image": round(seconds * 1e3, 2), "bytes_per_image": round(size),
                         "time_vs_6": round(seconds / base_seconds, 3), "bytes_vs_6": round(size / base_bytes, 3)}
            for level, (seconds, size) in rows.items()
        }
    print(json.dumps({"benchmark": "png_levels", "machine": platform.processor() or platform.machine(),
                      "size": args.size, "images": args.images, "results": results}))


if __name__ == "__main__":
    main()
