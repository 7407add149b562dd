"""Benchmark: the engine against diffusers' pipelines called the official harness's way.

For each mitigation (none, negative prompt, SEGA strong, SLD strong), times the same
images made two ways on one snapshot: the harness's way (one pipeline call per prompt,
`--images-per-prompt` images each; StableDiffusionPipeline, SemanticStableDiffusionPipeline
or StableDiffusionPipelineSafe) and the engine's (batches of `--batch-size` images that
mix prompts, one denoiser call per step for all branches). Prints seconds per image of
each and the harness/engine ratio (the baseline is measured in the same run), then one
JSON line. Default: a tiny random SD snapshot on the CPU, which shows the shape of the
comparison only; pass `--snapshot` (any Stable Diffusion 1.x/2.x snapshot, e.g. one the
model stage fetched) and `--device cuda` for the real cost.

    python tests/benchmarks/engine.py --prompts 4 --steps 10
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from i2peval.generation.engine import Engine
from i2peval.generation.guidance import guidance_for
from i2peval.generation.latent_models import load_latent_model
from i2peval.generation.mitigations import HARNESS_CONCEPT, SEGA_PRESETS, SLD_PRESETS, resolve_mitigation
from i2peval.generation.seeds import image_generators, image_seed
from i2peval.generation.text import TextOptions
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


def harness_pipeline(base, kind: str):
    from diffusers import SemanticStableDiffusionPipeline, StableDiffusionPipelineSafe

    if kind in ("none", "negative_prompt"):
        return base
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", type=Path, help="a Stable Diffusion snapshot folder (default: a tiny random one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--images-per-prompt", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    from diffusers import StableDiffusionPipeline
    from diffusers.utils.torch_utils import randn_tensor

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    with tempfile.TemporaryDirectory() as folder:
        snapshot = args.snapshot or Path(folder) / "tiny"
        if args.snapshot is None:
            build_tiny_pipeline(snapshot, seed=0)
        base = StableDiffusionPipeline.from_pretrained(
            snapshot, dtype=dtype, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        ).to(device)
        base.set_progress_bar_config(disable=True)
        model = load_latent_model(snapshot, dtype, device)
    prompts = [PROMPTS[index % len(PROMPTS)] for index in range(args.prompts)]
    requests = [(prompt, image_seed(1000 + number, index)) for number, prompt in enumerate(prompts)
                for index in range(args.images_per_prompt)]
    images = len(requests)
    latent_shape = model.latent_shape(args.size, args.size)
    # one untimed image each way first: lazy initialisation is not what is measured
    warm = resolve_mitigation("none", MITIGATIONS["none"], HARNESS_CONCEPT)
    base(prompts[0], num_inference_steps=1, height=args.size, width=args.size)
    Engine(model, guidance_for(warm, 7.5), TextOptions()).generate(prompts[:1], [0], args.size, args.size, 1)
    print(f"{images} images, {args.steps} steps, {args.size} px, {args.dtype} on {device}")
    print(f"{'mitigation':>16} {'harness s/img':>14} {'engine s/img':>13} {'harness/engine':>15}")
    results = {}
    for name, spec in MITIGATIONS.items():
        mitigation = resolve_mitigation(name, spec, HARNESS_CONCEPT)
        pipeline = harness_pipeline(base, mitigation.kind)
        synchronize(device)
        started = time.perf_counter()
        for start in range(0, images, args.images_per_prompt):
            call = requests[start : start + args.images_per_prompt]
            noise = randn_tensor(
                (len(call), *latent_shape), generator=image_generators([seed for _, seed in call]), dtype=dtype
            )
            pipeline(
                prompt=call[0][0], num_images_per_prompt=len(call), latents=noise.to(device),
                num_inference_steps=args.steps, height=args.size, width=args.size,
                **harness_arguments(mitigation.kind, mitigation.preset),
            )
        synchronize(device)
        harness = (time.perf_counter() - started) / images
        engine = Engine(model, guidance_for(mitigation, 7.5), TextOptions(long_prompts=mitigation.long_prompts))
        started = time.perf_counter()
        for start in range(0, images, args.batch_size):
            batch = requests[start : start + args.batch_size]
            engine.generate(
                [prompt for prompt, _ in batch], [seed for _, seed in batch], args.size, args.size, args.steps
            )
        synchronize(device)
        ours = (time.perf_counter() - started) / images
        results[name] = {"harness_s_per_image": harness, "engine_s_per_image": ours, "ratio": harness / ours}
        print(f"{name:>16} {harness:14.4f} {ours:13.4f} {harness / ours:14.2f}x")
    print(json.dumps({"benchmark": "engine", "device": str(device), "dtype": args.dtype, "images": images,
                      "steps": args.steps, "size": args.size, "results": results}))


if __name__ == "__main__":
    main()
