"""The engine gives the official harness's images: every preset against diffusers' own pipelines.

The harness (ml-research/i2p) called StableDiffusionPipeline (with ``negative_prompt``
for the negative-prompt condition), SemanticStableDiffusionPipeline and
StableDiffusionPipelineSafe once per prompt, with the concept text and the presets
below. Here each oracle gets one prompt per call and the starting noise our engine
draws for those images; the engine makes all images of a short and a long (> 77
tokens) prompt in one mixed batch. With 20 steps every preset's warmup (at most 15)
has passed before the end. Images are 32 px to keep the tests fast.

Pixels must agree within 1/255. Final latents are compared too: their difference must
be a small fraction of the preset's own effect on them (how far the harness's
mitigated latents are from its unmitigated ones), so a test passes because the
guidance is the same, not because the tiny model barely reacts to it. (A fraction,
not a bound on every element: SEGA's quantile and SLD's threshold are discontinuous,
and the float rounding of another batch layout can move an element across them.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from i2peval.generation.engine import Engine
from i2peval.generation.guidance import guidance_for
from i2peval.generation.latent_models import load_latent_model
from i2peval.generation.mitigations import HARNESS_CONCEPT, resolve_mitigation
from i2peval.generation.seeds import image_generators
from i2peval.generation.text import TextOptions

STEPS = 20
GUIDANCE_SCALE = 7.5
SHORT = "a red apple on a wooden table"
LONG = (
    "a very long description of a quiet harbour town at dawn with fishing boats, gulls, "
    "wet cobblestones, lanterns, nets drying on wooden racks, a lighthouse on the cliff, "
    "mist over the water, children running to school, a baker opening the shop, bicycles "
    "leaning against painted walls, flower boxes under every window and a cat asleep on a "
    "warm step, painted in the style of a nineteenth century oil painting, highly detailed"
)
SEEDS = {SHORT: [11, 12], LONG: [21, 22]}
SIZE = 32
RELATIVE_TOLERANCE = 0.01

# ml-research/i2p, mitigation/semantic_ssd.py: SafetyConfig (edit_mom_beta left at the pipeline's 0.4)
HARNESS_SEGA = {
    "medium": {"edit_guidance_scale": 4, "edit_warmup_steps": 10, "edit_momentum_scale": 0.3, "edit_threshold": 0.9},
    "strong": {"edit_guidance_scale": 7, "edit_warmup_steps": 5, "edit_momentum_scale": 0.5, "edit_threshold": 0.85},
    "max": {"edit_guidance_scale": 10, "edit_warmup_steps": 0, "edit_momentum_scale": 0.5, "edit_threshold": 0.75},
}
CONDITIONS = [
    ("negative_prompt", None),
    *[("sega", preset) for preset in HARNESS_SEGA],
    *[("sld", preset) for preset in ("weak", "medium", "strong", "max")],
]


@pytest.fixture(scope="module")
def pipeline(tiny_sd_snapshot):
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(
        tiny_sd_snapshot, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipeline.set_progress_bar_config(disable=True)
    assert len(pipeline.tokenizer(LONG).input_ids) > 77
    assert len(pipeline.tokenizer(SHORT).input_ids) < 77
    return pipeline


@pytest.fixture(scope="module")
def model(tiny_sd_snapshot):
    return load_latent_model(tiny_sd_snapshot, torch.float32, torch.device("cpu"))


def starting_noise(seeds):
    """What the engine draws for these images (seeds.py), for the oracle's ``latents=``."""
    from diffusers.utils.torch_utils import randn_tensor

    latent_size = SIZE // 2  # the tiny VAE halves each side
    return randn_tensor(
        (len(seeds), 4, latent_size, latent_size), generator=image_generators(seeds), dtype=torch.float32
    )


def harness_call(pipeline, kind, preset, text):
    """(pixels, final latents) of one oracle call the way the harness made it."""
    from diffusers import SemanticStableDiffusionPipeline, StableDiffusionPipelineSafe
    from diffusers.pipelines.deprecated.stable_diffusion_safe import SafetyConfig

    components = {name: getattr(pipeline, name) for name in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    no_checker = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    final = {}

    def keep_latents(step, timestep, latents):
        final["latents"] = latents.clone()

    arguments = {
        "prompt": text,
        "num_images_per_prompt": len(SEEDS[text]),
        "latents": starting_noise(SEEDS[text]),
        "num_inference_steps": STEPS,
        "guidance_scale": GUIDANCE_SCALE,
        "height": SIZE,
        "width": SIZE,
        "callback": keep_latents,
    }
    if kind in ("none", "negative_prompt"):
        oracle = pipeline
        arguments.pop("callback")
        arguments["callback_on_step_end"] = lambda pipe, step, timestep, tensors: final.update(
            latents=tensors["latents"].clone()
        ) or {}
        if kind == "negative_prompt":
            arguments["negative_prompt"] = HARNESS_CONCEPT
    elif kind == "sega":
        oracle = SemanticStableDiffusionPipeline(**components, **no_checker)
        arguments.update(editing_prompt=HARNESS_CONCEPT, reverse_editing_direction=True, **HARNESS_SEGA[preset])
    else:
        oracle = StableDiffusionPipelineSafe(**components, **no_checker)
        assert oracle.safety_concept == HARNESS_CONCEPT
        arguments.update(getattr(SafetyConfig, preset.upper()))
    oracle.set_progress_bar_config(disable=True)
    images = oracle(**arguments).images
    return np.stack([np.asarray(image) for image in images]), final["latents"]


def harness_run(pipeline, kind, preset):
    calls = [harness_call(pipeline, kind, preset, text) for text in (SHORT, LONG)]
    return np.concatenate([pixels for pixels, _ in calls]), torch.cat([latents for _, latents in calls])


def engine_run(model, kind, preset):
    spec = {"kind": kind, **({"preset": preset} if preset else {})}
    mitigation = resolve_mitigation(kind, spec, HARNESS_CONCEPT)
    engine = Engine(model, guidance_for(mitigation, GUIDANCE_SCALE), TextOptions(long_prompts=mitigation.long_prompts))
    prompts = [SHORT, LONG, SHORT, LONG]  # mixed, in another order than the oracle's
    seeds = [SEEDS[SHORT][0], SEEDS[LONG][0], SEEDS[SHORT][1], SEEDS[LONG][1]]
    latents = engine.denoise(prompts, seeds, SIZE, SIZE, STEPS)
    images = engine.decode(latents)
    order = [0, 2, 1, 3]  # back to the oracle's (short, short, long, long)
    pixels = np.stack([np.asarray(images[index].image) for index in order])
    assert all(image.degenerate is None for image in images)
    return pixels, latents[order]


@pytest.fixture(scope="module")
def unmitigated(pipeline):
    return harness_run(pipeline, "none", None)


def assert_equivalent(ours, harness, unmitigated):
    pixels, latents = ours
    harness_pixels, harness_latents = harness
    assert np.abs(pixels.astype(int) - harness_pixels.astype(int)).max() <= 1
    effect = (harness_latents - unmitigated[1]).norm()
    assert (latents - harness_latents).norm() < RELATIVE_TOLERANCE * effect


def test_no_mitigation_equals_stable_diffusion_pipeline(model, unmitigated):
    pixels, latents = engine_run(model, "none", None)
    assert np.abs(pixels.astype(int) - unmitigated[0].astype(int)).max() <= 1
    assert (latents - unmitigated[1]).abs().max() < 1e-4


@pytest.mark.parametrize("kind, preset", CONDITIONS, ids=[f"{kind}-{preset}" for kind, preset in CONDITIONS])
def test_preset_equals_the_harness_pipeline(pipeline, model, unmitigated, kind, preset):
    assert_equivalent(engine_run(model, kind, preset), harness_run(pipeline, kind, preset), unmitigated)
