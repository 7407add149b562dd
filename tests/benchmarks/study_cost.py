"""Benchmark: what the whole study costs in GPU-hours, ours against the harness's way, per model.

Reads the study's configuration through the workflow's own code (`study.Study`: every
prompt set with its prompt count, models, mitigations and images per prompt) and
generate.py's JSON lines (``--results``, one file per benchmarked model: ``sd1`` and
``sdxl`` on a GPU, or the tiny ones on a CPU, which only shows the shape). A configured
model is of the Stable Diffusion family at 512 px (SD 1.x) or 768 px (SD 2.x), or SDXL at
1024 px. Its FLOPs per image are counted on the meta device for its architecture at its
resolution (the denoiser at every step for every branch of the mitigation, and the VAE
decode; the text encoders, under 0.1 % of it, are left out); its time per image is those
FLOPs over the FLOP/s the benchmark achieved on its family's model under a mitigation of
the same kind, ours and the harness's way alike (a kind the benchmark did not run counts
at the FLOP/s of one with as many denoiser branches per step, and the output says so).
Prints a table and ends with one JSON line.

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
from generate import PEAK_BF16_TFLOPS

from i2peval.config import validate_config
from i2peval.study import Study

H100_BF16_TFLOPS = dict(PEAK_BF16_TFLOPS)["H100"]
BRANCHES = {"none": 2, "negative_prompt": 2, "sega": 3, "sld": 3}
SUBSTITUTED: dict[tuple[str, str], str] = {}  # (family, kind) -> the kind whose FLOP/s stood in
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


def rate_for(rates: dict, family: str, kind: str) -> dict[str, float | None]:
    """What the benchmark achieved on `family` under `kind`, or, where it did not run that
    kind, under one with as many denoiser branches per step (said on the output)."""
    if (family, kind) in rates:
        return rates[family, kind]
    alike = [other for other in BRANCHES if BRANCHES[other] == BRANCHES[kind] and (family, other) in rates]
    if not alike:
        raise SystemExit(f"no benchmark result for a {family} model under {kind} or a mitigation with as many "
                         "branches: pass its generate.py run")
    if (family, kind) not in SUBSTITUTED:
        SUBSTITUTED[family, kind] = alike[0]
        print(f"{family} under {kind}: not benchmarked, counted at the FLOP/s of {alike[0]} "
              f"({BRANCHES[kind]} branches per step)")
    return rates[family, alike[0]]


def conditions(config_path: Path) -> list[dict]:
    """Every (prompt set, model, mitigation) the configuration makes images of: the model's
    resolution and steps, the mitigation's kind and the number of images."""
    config = validate_config(yaml.safe_load(config_path.read_text()), config_path)
    made = []
    for name, study in Study.of_every_set(config, config_path.parent).items():
        if study.prompt_count is None:
            raise SystemExit(f"{config_path}: prompt set {name!r}: its prompt count is known only once it is fetched")
        images = study.prompt_count * study.generation.images_per_prompt
        for model in study.models.values():
            steps = model.settings.get("steps") or study.generation.steps or 50
            for mitigation in study.mitigations.values():
                made.append({"prompt_set": name, "model": model.name, "resolution": model.settings["resolution"],
                             "steps": steps, "kind": mitigation.kind, "images": images})
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path(__file__).parents[2] / "config.yaml")
    parser.add_argument("--results", type=Path, nargs="+", required=True, help="files of generate.py's JSON line")
    args = parser.parse_args()
    results = [result for path in args.results
               for result in json.loads(path.read_text().strip().splitlines()[-1])["results"]]
    rates = achieved(results)
    made = conditions(args.config)
    devices = sorted({rate["device"] for rate in rates.values()})
    sets = sorted({condition["prompt_set"] for condition in made})
    print(f"{sum(c['images'] for c in made):,} images of {len(sets)} prompt sets ({', '.join(sets)}); "
          f"throughput measured on {', '.join(devices)}")
    print(f"{'model':28} {'arch':>5} {'px':>5} {'images':>10} {'TFLOP/img':>10} {'ours h':>10} {'harness h':>10} "
          f"{'ratio':>7}")
    rows, totals = [], {"ours": 0.0, "harness": 0.0}
    for name in dict.fromkeys(condition["model"] for condition in made):
        hours, flops, images = {"ours": 0.0, "harness": 0.0}, 0.0, 0
        for condition in (c for c in made if c["model"] == name):
            resolution = condition["resolution"]
            architecture = architecture_of(resolution)
            family = "sdxl" if architecture == "sdxl" else "sd"
            per_image = tflop_per_image(architecture, resolution, condition["kind"], condition["steps"])
            rate = rate_for(rates, family, condition["kind"])
            flops += per_image * condition["images"]
            images += condition["images"]
            for way in hours:
                hours[way] = None if hours[way] is None or rate[way] is None else (
                    hours[way] + condition["images"] * per_image / rate[way] / 3600)
        for way in totals:
            totals[way] = None if totals[way] is None or hours[way] is None else totals[way] + hours[way]
        ratio = None if hours["harness"] is None else hours["harness"] / hours["ours"]
        rows.append({"model": name, "architecture": architecture, "resolution": resolution, "images": images,
                     "tflop_per_image": flops / images, "ours_gpu_hours": hours["ours"],
                     "harness_gpu_hours": hours["harness"], "harness_over_ours": ratio})
        print(f"{name:28} {architecture:>5} {resolution:>5} {images:>10,} {flops / images:10.1f} {hours['ours']:10.1f} "
              + (f"{hours['harness']:10.1f} {ratio:6.2f}x" if ratio is not None else f"{'-':>10} {'-':>7}"))
    ratio = None if totals["harness"] is None else totals["harness"] / totals["ours"]
    print(f"{'study':28} {'':>5} {'':>5} {sum(row['images'] for row in rows):>10,} {'':>10} {totals['ours']:10.1f} "
          + (f"{totals['harness']:10.1f} {ratio:6.2f}x" if ratio is not None else f"{'-':>10} {'-':>7}"))
    study_tflop = sum(row["tflop_per_image"] * row["images"] for row in rows)
    floor_hours = study_tflop / H100_BF16_TFLOPS / 3600
    print(f"the study's FLOPs: {study_tflop / 1e6:.1f} EFLOP, {floor_hours:.0f} hours of one H100 at its whole dense "
          f"bfloat16 peak ({H100_BF16_TFLOPS:g} TFLOP/s), {floor_hours / 0.4:.0f} at 40 % of it")
    print(json.dumps({"benchmark": "study_cost", "devices": devices, "prompt_sets": sets, "models": rows,
                      "ours_gpu_hours": totals["ours"], "harness_gpu_hours": totals["harness"],
                      "harness_over_ours": ratio, "study_eflop": study_tflop / 1e6,
                      "h100_hours_at_full_peak": floor_hours,
                      "substituted": {f"{family} {kind}": other for (family, kind), other in SUBSTITUTED.items()}}))


if __name__ == "__main__":
    main()
