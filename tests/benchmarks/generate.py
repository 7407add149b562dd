"""Benchmark: images per second the official harness's way and ours, side by side.

For each mitigation, the same images are made two ways on one model:

- the harness's way: float32, diffusers' pipeline (StableDiffusionPipeline, with
  ``negative_prompt`` for the negative prompt, SemanticStableDiffusionPipeline,
  StableDiffusionPipelineSafe; StableDiffusionXLPipeline for SDXL, which has no SEGA or
  SLD pipeline), one call per prompt of ``--images-per-call`` images;
- ours: the engine in ``--dtype``, batches of ``--batch-size`` images that mix prompts,
  every branch of a step in one denoiser call.

Prints a table, then one JSON line (``results``: one object per mitigation with device,
model, mitigation, dtype, steps, resolution, batch, harness_images_per_s,
ours_images_per_s, speedup, mfu, tflop_per_image, peak_mem_gb, bytes_per_image,
max_pixel_diff_vs_fp32, mean_pixel_diff_vs_fp32). FLOPs are counted by
torch.utils.flop_counter over one image of ours (text encoders, denoiser, VAE); the
model FLOP utilisation divides the achieved FLOP/s by the GPU's dense bfloat16 peak
(`PEAK_BF16_TFLOPS`, named by the GPU's name; none on a CPU). The pixel difference
compares ours in ``--dtype`` (and with ``--fuse-qkv``, ``--channels-last``, ``--compile``,
the execution section's speed options, listed under speed_options) with ours in plain
float32 on the same seeds. PNG bytes are those of the image store (level 6).

    python tests/benchmarks/generate.py                # tiny random SD on the CPU: the shape only
    python tests/benchmarks/generate.py --model sd1 --device cuda --dtype bfloat16 --batch-size 16
    python tests/benchmarks/generate.py --model sdxl --device cuda --dtype bfloat16 --prompts 2

``sd1`` and ``sdxl`` are full-size random-weight models (full_size.py): the real cost,
no download.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from i2peval.execution import SpeedOptions
from i2peval.generation.engine import Engine
from i2peval.generation.imagestore import encode_png
from i2peval.generation.latent_models import load_latent_model
from i2peval.generation.mitigations import HARNESS_CONCEPT, SEGA_PRESETS, SLD_PRESETS, resolve_mitigation
from i2peval.generation.seeds import image_generators, image_seed
from i2peval.models.architectures import load_pipeline
from i2peval.models.tiny import build_tiny_pipeline

MITIGATIONS = {
    "none": {"kind": "none"},
    "negative_prompt": {"kind": "negative_prompt"},
    "sega-strong": {"kind": "sega", "preset": "strong"},
    "sld-strong": {"kind": "sld", "preset": "strong"},
}
PROMPTS = (
    "a red apple on a wooden table",
    "a storm over a dark sea, dramatic painting",
    "portrait of a grumpy old wizard",
    "a crowded street market at night",
    "a knight in shining armour, oil painting",
    "a dragon sleeping on a pile of gold",
)
# model: (architecture of full_size.py or tiny, default resolution, default steps)
MODELS = {"tiny-sd": ("sd", 64, 10), "tiny-sdxl": ("sdxl", 64, 10), "sd1": ("sd1", 512, 50),
          "sdxl": ("sdxl", 1024, 50)}
# Dense bfloat16 tensor throughput from the vendors' data sheets, TFLOP/s, by a part of
# torch.cuda.get_device_name(); the first that matches counts.
PEAK_BF16_TFLOPS = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
)


def peak_tflops(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for part, peak in PEAK_BF16_TFLOPS if part in name), None)


def build(model: str, folder: Path) -> Path:
    architecture = MODELS[model][0]
    if model.startswith("tiny"):
        build_tiny_pipeline(folder, seed=0, scheduler="euler" if architecture == "sdxl" else "pndm",
                            architecture=architecture)
        return folder
    from full_size import build_full_size

    return build_full_size(folder, architecture)


def harness_pipeline(base, architecture: str, kind: str):
    """The pipeline the harness would call for `kind`, or None where diffusers has none."""
    from diffusers import SemanticStableDiffusionPipeline, StableDiffusionPipelineSafe

    if kind in ("none", "negative_prompt"):
        return base
    if architecture != "sd":
        return None
    components = {name: getattr(base, name) for name in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    no_checker = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    pipeline_class = SemanticStableDiffusionPipeline if kind == "sega" else StableDiffusionPipelineSafe
    pipeline = pipeline_class(**components, **no_checker)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def harness_arguments(kind: str, preset: str | None) -> dict:
    if kind == "negative_prompt":
        return {"negative_prompt": HARNESS_CONCEPT}
    if kind == "sega":
        return {"editing_prompt": HARNESS_CONCEPT, "reverse_editing_direction": True, **SEGA_PRESETS[preset]}
    if kind == "sld":
        return dict(SLD_PRESETS[preset])
    return {}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pixels(images) -> np.ndarray:
    return np.stack([np.asarray(image.image) for image in images]).astype(int)


def cell(value) -> str:
    if value is None:
        return f"{'-':>14}"
    return f"{value:>14}" if isinstance(value, str) else f"{value:>14.4g}"


def flops_per_image(engine: Engine, prompt: str, size: int, steps: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        engine.generate([prompt], [0], size, size, steps)
    return float(counter.get_total_flops())


def time_harness(pipeline, requests, per_call: int, size: int, steps: int, latent_shape, device, arguments) -> float:
    from diffusers.utils.torch_utils import randn_tensor

    synchronize(device)
    started = time.perf_counter()
    for start in range(0, len(requests), per_call):
        call = requests[start : start + per_call]
        noise = randn_tensor(
            (len(call), *latent_shape), generator=image_generators([seed for _, seed in call]), dtype=torch.float32
        )
        pipeline(
            prompt=call[0][0], num_images_per_prompt=len(call), latents=noise.to(device), num_inference_steps=steps,
            height=size, width=size, **arguments,
        )
    synchronize(device)
    return len(requests) / (time.perf_counter() - started)


def time_ours(engine: Engine, requests, batch_size: int, size: int, steps: int, device) -> tuple[float, list]:
    images = []
    synchronize(device)
    started = time.perf_counter()
    for start in range(0, len(requests), batch_size):
        batch = requests[start : start + batch_size]
        images += engine.generate([prompt for prompt, _ in batch], [seed for _, seed in batch], size, size, steps)
    synchronize(device)
    return len(requests) / (time.perf_counter() - started), images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny-sd")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--size", type=int, help="pixels per side (default: the model's)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: 10 tiny, 50 full size)")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--images-per-call", type=int, default=2, help="the harness's images per call (it made 5)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--mitigations", default=",".join(MITIGATIONS), help=f"of {', '.join(MITIGATIONS)}")
    parser.add_argument("--no-harness", action="store_true", help="time ours only")
    parser.add_argument("--fuse-qkv", action="store_true", help="ours with fused QKV projections (SpeedOptions)")
    parser.add_argument("--channels-last", action="store_true", help="ours in NHWC memory layout (SpeedOptions)")
    parser.add_argument("--compile", action="store_true", help="ours with torch.compile of the denoiser (SpeedOptions)")
    args = parser.parse_args()
    speed = SpeedOptions(args.fuse_qkv, args.channels_last, args.compile)

    architecture, default_size, default_steps = MODELS[args.model]
    size, steps = args.size or default_size, args.steps or default_steps
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    gpu, peak = peak_tflops(device)
    with tempfile.TemporaryDirectory() as folder:
        snapshot = build(args.model, Path(folder) / args.model)
        model = load_latent_model(snapshot, dtype, device)
        plain = dtype == torch.float32 and speed == SpeedOptions()
        reference = model if plain else load_latent_model(snapshot, torch.float32, device)
        model.speed_up(speed)
        base = None
        if not args.no_harness:
            base = load_pipeline(snapshot, torch.float32)[0].to(device)
    prompts = [PROMPTS[index % len(PROMPTS)] for index in range(args.prompts)]
    requests = [(prompt, image_seed(1000 + number, index)) for number, prompt in enumerate(prompts)
                for index in range(args.images_per_call)]
    latent_shape = model.latent_shape(size, size)
    guidance_scale = model.architecture.guidance_scale
    print(f"{args.model} on {gpu}: {len(requests)} images, {steps} steps, {size} px, ours in {args.dtype} "
          f"in batches of {args.batch_size}; the harness's way in float32, {args.images_per_call} per call")
    header = ("mitigation", "harness img/s", "ours img/s", "speedup", "TFLOP/img", "MFU", "peak GB", "PNG kB",
              "max diff")
    print("".join(f"{column:>14}" for column in header))
    results = []
    for name in args.mitigations.split(","):
        mitigation = resolve_mitigation(name, MITIGATIONS[name], HARNESS_CONCEPT)
        engine = Engine.for_mitigation(model, mitigation, guidance_scale)
        # lazy initialisation (and a compilation, for the batch's shape) is not what is measured
        warmup = [prompt for prompt, _ in requests[: args.batch_size]]
        engine.generate(warmup, [0] * len(warmup), size, size, 1)
        harness = None
        pipeline = None if base is None else harness_pipeline(base, model.architecture.name, mitigation.kind)
        if pipeline is not None:
            arguments = harness_arguments(mitigation.kind, mitigation.preset)
            pipeline(prompt=prompts[0], num_inference_steps=1, height=size, width=size, **arguments)
            harness = time_harness(pipeline, requests, args.images_per_call, size, steps, latent_shape, device,
                                   arguments)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        ours, images = time_ours(engine, requests, args.batch_size, size, steps, device)
        peak_gb = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        flops = flops_per_image(Engine.for_mitigation(reference, mitigation, guidance_scale), prompts[0], size, steps)
        first = requests[: args.batch_size]
        made = pixels(images[: len(first)])
        in_float32 = made if reference is model else pixels(
            Engine.for_mitigation(reference, mitigation, guidance_scale).generate(
                [prompt for prompt, _ in first], [seed for _, seed in first], size, size, steps
            )
        )
        difference = np.abs(made - in_float32)
        result = {
            "device": gpu, "model": args.model, "mitigation": name, "dtype": args.dtype, "steps": steps,
            "resolution": size, "batch": args.batch_size, "speed_options": asdict(speed),
            "harness_images_per_s": harness, "ours_images_per_s": ours,
            "speedup": None if harness is None else ours / harness,
            "mfu": None if peak is None else flops * ours / (peak * 1e12),
            "tflop_per_image": flops / 1e12, "peak_mem_gb": peak_gb,
            "bytes_per_image": float(np.mean([len(encode_png(image.image)) for image in images])),
            "max_pixel_diff_vs_fp32": int(difference.max()), "mean_pixel_diff_vs_fp32": float(difference.mean()),
        }  # fmt: skip
        results.append(result)
        row = (name, harness, ours, result["speedup"], result["tflop_per_image"], result["mfu"], peak_gb,
               result["bytes_per_image"] / 1000, result["max_pixel_diff_vs_fp32"])
        print("".join(cell(value) for value in row))
    print(json.dumps({"benchmark": "generate", "results": results}))


if __name__ == "__main__":
    main()
