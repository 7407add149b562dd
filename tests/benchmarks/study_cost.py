"""Benchmark: what the whole study costs in GPU-hours, ours against the harness's way, per model.

Reads the study's configuration (models, resolutions, mitigations, images per prompt; the
I2P file's 4,703 prompts) and generate.py's JSON lines (``--results``, one file per
benchmarked model: ``sd1`` and ``sdxl`` on a GPU, or the tiny ones on a CPU, which only
shows the shape). A configured model is of the Stable Diffusion family at 512 px (SD 1.x)
or 768 px (SD 2.x), or SDXL at 1024 px. Its FLOPs per image are counted on the meta
device for its architecture at its resolution (the denoiser at every step for every
branch of the mitigation, and the VAE decode; the text encoders, under 0.1 % of it, are
left out); its time per image is those FLOPs over the FLOP/s the benchmark achieved on
its family's model under a mitigation of the same kind, ours and the harness's way
alike. Prints a table and ends with one JSON line.

    python tests/benchmarks/generate.py --model sd1 --device cuda ... > sd1.json
    python tests/benchmarks/study_cost.py --results sd1.json sdxl.json
"""

from __future__ import annotations

import argparse
import json
from functools import cache
from pathlib import Path

import yaml
from full_size import unet_cost, vae_cost

I2P_PROMPTS = 4703
BRANCHES = {"none": 2, "negative_prompt": 2, "sega": 3, "sld": 3}
BENCHMARK_FAMILY = {"sd1": "sd", "tiny-sd": "sd", "sdxl": "sdxl", "tiny-sdxl": "sdxl"}


def architecture_of(resolution: int) -> str:
    return {512: "sd1", 768: "sd2", 1024: "sdxl"}[resolution]


@cache
def unet_tflop(architecture: str, resolution: int) -> float:
    return unet_cost(architecture, resolution)[1]


@cache
def vae_tflop(resolution: int) -> float:
    return vae_cost(resolution)[1]


def tflop_per_image(architecture: str, resolution: int, kind: str, steps: int) -> float:
    return steps * BRANCHES[kind] * unet_tflop(architecture, resolution) + vae_tflop(resolution)


def achieved(results: list[dict]) -> dict[tuple[str, str], dict[str, float | None]]:
    """TFLOP/s ours and the harness's way achieved, by (family, mitigation kind)."""
    rates = {}
    for result in results:
        kind = {"none": "none", "negative_prompt": "negative_prompt"}.get(result["mitigation"],
                                                                          result["mitigation"].split("-")[0])
        flops = result["tflop_per_image"]
        harness = result["harness_images_per_s"]
        rates[BENCHMARK_FAMILY[result["model"]], kind] = {
            "ours": flops * result["ours_images_per_s"],
            "harness": None if harness is None else flops * harness,
            "device": result["device"],
        }
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path(__file__).parents[2] / "config.yaml")
    parser.add_argument("--results", type=Path, nargs="+", required=True, help="files of generate.py's JSON line")
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    results = [result for path in args.results
               for result in json.loads(path.read_text().strip().splitlines()[-1])["results"]]
    rates = achieved(results)
    images_per_prompt = config["generation"]["images_per_prompt"]
    steps = config["generation"].get("steps") or 50
    kinds = {name: spec["kind"] for name, spec in config["mitigations"].items()}
    devices = sorted({rate["device"] for rate in rates.values()})
    print(f"{I2P_PROMPTS} prompts x {images_per_prompt} images x {len(kinds)} mitigations per model, {steps} steps; "
          f"throughput measured on {', '.join(devices)}")
    print(f"{'model':28} {'arch':>5} {'px':>5} {'TFLOP/img':>10} {'ours h':>10} {'harness h':>10} {'ratio':>7}")
    rows, totals = [], {"ours": 0.0, "harness": 0.0}
    for name, model in config["models"].items():
        resolution = model.get("resolution", 512)
        architecture = architecture_of(resolution)
        family = "sdxl" if architecture == "sdxl" else "sd"
        hours, flops = {"ours": 0.0, "harness": 0.0}, 0.0
        for kind in kinds.values():
            per_image = tflop_per_image(architecture, resolution, kind, model.get("steps", steps))
            flops += per_image / len(kinds)
            rate = rates.get((family, kind))
            if rate is None:
                raise SystemExit(f"no benchmark result for a {family} model under {kind}: pass its generate.py run")
            images = I2P_PROMPTS * images_per_prompt
            for way in hours:
                hours[way] = None if hours[way] is None or rate[way] is None else (
                    hours[way] + images * per_image / rate[way] / 3600)
        for way in totals:
            totals[way] = None if totals[way] is None or hours[way] is None else totals[way] + hours[way]
        ratio = None if hours["harness"] is None else hours["harness"] / hours["ours"]
        rows.append({"model": name, "architecture": architecture, "resolution": resolution,
                     "tflop_per_image": flops, "ours_gpu_hours": hours["ours"],
                     "harness_gpu_hours": hours["harness"], "harness_over_ours": ratio})
        print(f"{name:28} {architecture:>5} {resolution:>5} {flops:10.1f} {hours['ours']:10.1f} "
              + (f"{hours['harness']:10.1f} {ratio:6.2f}x" if ratio is not None else f"{'-':>10} {'-':>7}"))
    ratio = None if totals["harness"] is None else totals["harness"] / totals["ours"]
    print(f"{'study':28} {'':>5} {'':>5} {'':>10} {totals['ours']:10.1f} "
          + (f"{totals['harness']:10.1f} {ratio:6.2f}x" if ratio is not None else f"{'-':>10} {'-':>7}"))
    print(json.dumps({"benchmark": "study_cost", "devices": devices, "models": rows,
                      "ours_gpu_hours": totals["ours"], "harness_gpu_hours": totals["harness"],
                      "harness_over_ours": ratio}))


if __name__ == "__main__":
    main()
