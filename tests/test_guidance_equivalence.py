"""The engine gives the official harness's images: every preset against diffusers' own pipelines.

The harness (ml-research/i2p) called StableDiffusionPipeline (with ``negative_prompt``
for the negative-prompt condition), SemanticStableDiffusionPipeline and
StableDiffusionPipelineSafe once per prompt, with the concept text and the presets
below. Here each oracle gets one prompt per call and the starting noise our engine
draws for those images; the engine makes all images of a short and a long (> 77
tokens) prompt in one mixed batch. With 20 steps every preset's warmup (at most 15)
has passed before the end. Images are 32 px to keep the tests fast.

Three setups (`SETUPS`): SD 1.x as the harness ran it (PNDM, epsilon, float32) with
every preset; SD 2.x's v-prediction with DDIM in batches of 8; Euler in bfloat16, where
the order of SLD's operations shows in the pixels.

Pixels must agree within 1/255. Final latents are compared too: their difference must
be a small fraction of the preset's own effect on them (how far the harness's
mitigated latents are from its unmitigated ones), so a test passes because the
guidance is the same, not because the tiny model barely reacts to it. (A fraction,
not a bound on every element: SEGA's quantile and SLD's threshold are discontinuous,
and the float rounding of another batch layout can move an element across them.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from i2peval.generation.engine import Engine
from i2peval.generation.latent_models import load_latent_model
from i2peval.generation.mitigations import HARNESS_CONCEPT, resolve_mitigation
from i2peval.generation.seeds import image_generators
from i2peval.models.tiny import build_tiny_pipeline

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


@dataclass(frozen=True)
class Setup:
    scheduler: str  # models.tiny.tiny_scheduler
    prediction_type: str
    dtype: torch.dtype
    images_per_prompt: int
    conditions: tuple[tuple[str, str | None], ...]

    def seeds(self, text: str) -> list[int]:
        first = 11 if text == SHORT else 21
        return list(range(first, first + self.images_per_prompt))


SETUPS = {
    "sd1-pndm-fp32": Setup("pndm", "epsilon", torch.float32, 2, tuple(CONDITIONS)),
    "sd2-ddim-v-fp32-batch8": Setup(
        "ddim", "v_prediction", torch.float32, 4, (("negative_prompt", None), ("sega", "strong"), ("sld", "strong"))
    ),
    "euler-bf16": Setup(
        "euler", "epsilon", torch.bfloat16, 2, (("sega", "strong"), ("sld", "medium"), ("sld", "strong"))
    ),
}
CASES = [(name, *condition) for name, setup in SETUPS.items() for condition in setup.conditions]


@dataclass(frozen=True)
class Prepared:
    """The harness's pipeline and our model of one setup, and the harness's unmitigated run."""

    setup: Setup
    pipeline: object
    model: object
    unmitigated: tuple[np.ndarray, torch.Tensor]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """`Prepared` of a setup by name, built on first use."""
    from diffusers import StableDiffusionPipeline

    built = {}

    def prepare(name: str) -> Prepared:
        if name not in built:
            setup = SETUPS[name]
            snapshot = tmp_path_factory.mktemp(name) / "snapshot"
            build_tiny_pipeline(snapshot, seed=0, scheduler=setup.scheduler, architecture="sd")
            config = snapshot / "scheduler" / "scheduler_config.json"
            config.write_text(json.dumps({**json.loads(config.read_text()), "prediction_type": setup.prediction_type}))
            pipeline = StableDiffusionPipeline.from_pretrained(
                snapshot, dtype=setup.dtype, safety_checker=None, feature_extractor=None, requires_safety_checker=False
            )
            pipeline.set_progress_bar_config(disable=True)
            assert pipeline.scheduler.config.prediction_type == setup.prediction_type
            assert len(pipeline.tokenizer(LONG).input_ids) > 77
            assert len(pipeline.tokenizer(SHORT).input_ids) < 77
            model = load_latent_model(snapshot, setup.dtype, torch.device("cpu"))
            built[name] = Prepared(setup, pipeline, model, harness_run(pipeline, setup, "none", None))
        return built[name]

    return prepare


def starting_noise(seeds, dtype):
    """What the engine draws for these images (seeds.py), for the oracle's ``latents=``."""
    from diffusers.utils.torch_utils import randn_tensor

    latent_size = SIZE // 2  # the tiny VAE halves each side
    return randn_tensor((len(seeds), 4, latent_size, latent_size), generator=image_generators(seeds), dtype=dtype)


def harness_call(pipeline, setup, kind, preset, text):
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
        "num_images_per_prompt": setup.images_per_prompt,
        "latents": starting_noise(setup.seeds(text), setup.dtype),
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


def harness_run(pipeline, setup, kind, preset):
    calls = [harness_call(pipeline, setup, kind, preset, text) for text in (SHORT, LONG)]
    return np.concatenate([pixels for pixels, _ in calls]), torch.cat([latents for _, latents in calls])


def engine_run(model, setup, kind, preset):
    spec = {"kind": kind, **({"preset": preset} if preset else {})}
    mitigation = resolve_mitigation(kind, spec, HARNESS_CONCEPT)
    engine = Engine.for_mitigation(model, mitigation, GUIDANCE_SCALE)
    # one batch, the prompts interleaved: another order than the oracle's (all short, then all long)
    short, long = setup.seeds(SHORT), setup.seeds(LONG)
    prompts = [text for _ in short for text in (SHORT, LONG)]
    seeds = [seed for pair in zip(short, long) for seed in pair]
    latents = engine.denoise(prompts, seeds, SIZE, SIZE, STEPS)
    images = engine.decode(latents)
    order = [*range(0, len(prompts), 2), *range(1, len(prompts), 2)]
    pixels = np.stack([np.asarray(images[index].image) for index in order])
    assert all(image.degenerate is None for image in images)
    return pixels, latents[order]


def assert_equivalent(ours, harness, unmitigated):
    pixels, latents = ours
    harness_pixels, harness_latents = harness
    assert np.abs(pixels.astype(int) - harness_pixels.astype(int)).max() <= 1
    effect = (harness_latents.float() - unmitigated[1].float()).norm()
    assert (latents.float() - harness_latents.float()).norm() < RELATIVE_TOLERANCE * effect


@pytest.mark.parametrize("name", list(SETUPS))
def test_no_mitigation_equals_stable_diffusion_pipeline(prepared, name):
    run = prepared(name)
    pixels, latents = engine_run(run.model, run.setup, "none", None)
    assert len(pixels) == 2 * run.setup.images_per_prompt
    assert np.abs(pixels.astype(int) - run.unmitigated[0].astype(int)).max() <= 1
    tolerance = 1e-4 if run.setup.dtype == torch.float32 else 0.0
    assert (latents.float() - run.unmitigated[1].float()).abs().max() <= tolerance


@pytest.mark.parametrize("name, kind, preset", CASES, ids=[f"{name}-{kind}-{preset}" for name, kind, preset in CASES])
def test_preset_equals_the_harness_pipeline(prepared, name, kind, preset):
    run = prepared(name)
    assert_equivalent(
        engine_run(run.model, run.setup, kind, preset),
        harness_run(run.pipeline, run.setup, kind, preset),
        run.unmitigated,
    )
