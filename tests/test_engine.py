"""The engine on both architectures: diffusers' own pipelines as oracles, batching, degenerate images.

test_guidance_equivalence.py holds every mitigation preset to the harness's pipelines on
Stable Diffusion; here SDXL and v-prediction are held to StableDiffusionXLPipeline and
StableDiffusionPipeline, and the guarantees users rely on are checked on the tiny SDXL.
Images are 32 px and schedules short to keep this fast.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from architecture_cases import MITIGATIONS, pixels

from i2peval.execution import SpeedOptions
from i2peval.generation.degenerate import BLACK, CONSTANT, NONFINITE_LATENTS, NONFINITE_PIXELS, degenerate_reason
from i2peval.generation.engine import Engine
from i2peval.generation.latent_models import load_latent_model
from i2peval.generation.mitigations import HARNESS_CONCEPT, resolve_mitigation
from i2peval.generation.seeds import image_generators, image_seed
from i2peval.generation.text import TextOptions, token_ids

SIZE = 32
STEPS = 8
SHORT = "a red apple on a wooden table"
OTHER = "a storm over a dark sea, dramatic painting"
LONG = " ".join(["a crowded night market with red lanterns, steaming food stalls and neon signs"] * 8)


def mitigation(name, **changes):
    return resolve_mitigation(name, {**MITIGATIONS[name], **changes}, HARNESS_CONCEPT)


def engine_for(model, name, guidance_scale, **changes):
    chosen = mitigation(name, **changes)
    return Engine.for_mitigation(model, chosen, guidance_scale)


def starting_noise(seeds):
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor((len(seeds), 4, SIZE // 2, SIZE // 2), generator=image_generators(seeds), dtype=torch.float32)


@pytest.fixture(scope="module")
def sdxl(tiny_sdxl_snapshot):
    return load_latent_model(tiny_sdxl_snapshot, torch.float32, torch.device("cpu"))


@pytest.fixture(scope="module")
def sdxl_pipeline(tiny_sdxl_snapshot):
    from diffusers import StableDiffusionXLPipeline

    pipeline = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_snapshot, add_watermarker=False)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.mark.parametrize("name", ["none", "negative_prompt"])
def test_sdxl_equals_stable_diffusion_xl_pipeline(sdxl, sdxl_pipeline, name):
    seeds = [5, 6]
    expected = sdxl_pipeline(
        prompt=SHORT,
        negative_prompt=HARNESS_CONCEPT if name == "negative_prompt" else None,
        num_images_per_prompt=2,
        latents=starting_noise(seeds),
        num_inference_steps=STEPS,
        guidance_scale=5.0,
        height=SIZE,
        width=SIZE,
    ).images
    ours = engine_for(sdxl, name, 5.0).generate([SHORT, SHORT], seeds, SIZE, SIZE, STEPS)
    assert np.abs(pixels(ours) - np.stack([np.asarray(image) for image in expected]).astype(int)).max() <= 1


def test_v_prediction_equals_stable_diffusion_pipeline(tiny_sd_snapshot, tmp_path):
    from diffusers import StableDiffusionPipeline

    snapshot = tmp_path / "v-prediction"
    shutil.copytree(tiny_sd_snapshot, snapshot)
    scheduler_config = snapshot / "scheduler" / "scheduler_config.json"
    config = json.loads(scheduler_config.read_text())
    scheduler_config.write_text(
        json.dumps({**config, "_class_name": "DDIMScheduler", "prediction_type": "v_prediction"})
    )
    pipeline = StableDiffusionPipeline.from_pretrained(snapshot, safety_checker=None, requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)
    assert pipeline.scheduler.config.prediction_type == "v_prediction"
    seeds = [7, 8]
    expected = pipeline(
        SHORT,
        num_images_per_prompt=2,
        latents=starting_noise(seeds),
        num_inference_steps=STEPS,
        height=SIZE,
        width=SIZE,
    ).images
    model = load_latent_model(snapshot, torch.float32, torch.device("cpu"))
    ours = engine_for(model, "none", 7.5).generate([SHORT, SHORT], seeds, SIZE, SIZE, STEPS)
    assert np.abs(pixels(ours) - np.stack([np.asarray(image) for image in expected]).astype(int)).max() <= 1


def test_sdxl_text_conditioning_equals_its_pipelines_encode_prompt(sdxl, sdxl_pipeline):
    prompts, negative, pooled, negative_pooled = sdxl_pipeline.encode_prompt(
        [SHORT, LONG], device=torch.device("cpu"), num_images_per_prompt=1, do_classifier_free_guidance=True
    )
    with torch.inference_mode():
        ours = sdxl.encode([SHORT, LONG, None], TextOptions(cleaning="none"))
    assert torch.allclose(ours["encoder_hidden_states"][:2], prompts, atol=1e-6)
    assert torch.allclose(ours["text_embeds"][:2], pooled, atol=1e-6)
    # force_zeros_for_empty_prompt: the unconditional branch is zeros
    assert not negative.any() and not negative_pooled.any()
    assert not ours["encoder_hidden_states"][2].any() and not ours["text_embeds"][2].any()


def test_stable_diffusion_text_conditioning_equals_its_pipelines_encode_prompt(tiny_sd_snapshot):
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(
        tiny_sd_snapshot, safety_checker=None, requires_safety_checker=False
    )
    prompts, negative = pipeline.encode_prompt([SHORT, LONG], torch.device("cpu"), 1, True)
    model = load_latent_model(tiny_sd_snapshot, torch.float32, torch.device("cpu"))
    with torch.inference_mode():
        ours = model.encode([SHORT, LONG, None], TextOptions(cleaning="none"))["encoder_hidden_states"]
    assert torch.allclose(ours[:2], prompts, atol=1e-6)
    assert torch.allclose(ours[2], negative[0], atol=1e-6)


def test_long_prompts_are_truncated_with_an_end_token_or_cut_without_one(sdxl):
    for tokenizer in sdxl.tokenizers:
        truncated, _ = token_ids(tokenizer, LONG, TextOptions(long_prompts="truncate"))
        cut, _ = token_ids(tokenizer, LONG, TextOptions(long_prompts="cut"))
        whole = tokenizer(LONG).input_ids
        assert len(whole) > 77
        assert truncated == whole[:76] + [tokenizer.eos_token_id]
        assert cut == whole[:77]
        assert (
            token_ids(tokenizer, SHORT, TextOptions(long_prompts="cut"))
            == token_ids(tokenizer, SHORT, TextOptions())
        )


@pytest.mark.parametrize("configured", [{}, {"long_prompts": "cut"}])
def test_sega_on_sdxl_truncates_long_prompts_so_each_keeps_its_own_pooled_embedding(sdxl, configured):
    # "cut" leaves no end token, where SDXL's pooled embedding is read: every long prompt
    # would get the start token's, the same for all
    other = " ".join(["a quiet harbour at dawn with fishing boats and grey gulls over the water"] * 8)
    engine = engine_for(sdxl, "sega", 5.0, **configured)
    assert engine.text_options.long_prompts == "truncate"
    pooled = sdxl.encode([LONG, other], engine.text_options)["text_embeds"]
    assert not torch.allclose(pooled[0], pooled[1])
    cut = sdxl.encode([LONG, other], TextOptions(long_prompts="cut"))["text_embeds"]
    assert torch.equal(cut[0], cut[1])


def test_ftfy_cleaning_straightens_what_the_harness_tokenizer_straightened(sdxl):
    tokenizer = sdxl.tokenizers[0]
    curly = "\u201c a girl on a ledge \u201d, a man \u2019 s mouth"
    straight = '" a girl on a ledge ", a man \' s mouth'
    assert (
        token_ids(tokenizer, curly, TextOptions(cleaning="ftfy"))
        == token_ids(tokenizer, straight, TextOptions(cleaning="none"))
    )
    assert (
        token_ids(tokenizer, curly, TextOptions(cleaning="none"))
        != token_ids(tokenizer, straight, TextOptions(cleaning="none"))
    )


@pytest.mark.parametrize(
    "name, changes",
    [("sega", {"overrides": {"edit_guidance_scale": 0}}), ("sld", {"overrides": {"sld_guidance_scale": 0}})],
)
def test_sdxl_guidance_at_scale_zero_equals_plain_generation(sdxl, name, changes):
    seeds = [image_seed(1001, index) for index in range(2)]
    plain = engine_for(sdxl, "none", 5.0).generate([SHORT, LONG], seeds, SIZE, SIZE, STEPS)
    zero = engine_for(sdxl, name, 5.0, **changes).generate([SHORT, LONG], seeds, SIZE, SIZE, STEPS)
    assert np.array_equal(pixels(plain), pixels(zero))


@pytest.fixture(scope="module")
def sdxl_images(sdxl):
    seeds = [image_seed(1001, index) for index in range(2)]
    return {
        name: pixels(engine_for(sdxl, name, 5.0).generate([SHORT, OTHER], seeds, SIZE, SIZE, STEPS))
        for name in MITIGATIONS
    }


@pytest.mark.parametrize("name", ["negative_prompt", "sega", "sld"])
def test_each_mitigation_changes_the_sdxl_image(sdxl_images, name):
    for index in range(2):
        assert np.abs(sdxl_images[name][index] - sdxl_images["none"][index]).mean() > 0.5


@pytest.mark.parametrize("name", sorted(MITIGATIONS))
def test_sdxl_image_is_the_same_alone_in_a_batch_of_ten_and_in_a_mixed_batch(sdxl, name):
    engine = engine_for(sdxl, name, 5.0)
    seeds = [image_seed(1010, index) for index in range(10)]
    alone = pixels(engine.generate([LONG], [seeds[3]], SIZE, SIZE, STEPS))[0]
    ten = pixels(engine.generate([LONG] * 10, seeds, SIZE, SIZE, STEPS))
    mixed = pixels(engine.generate([SHORT, "", LONG, OTHER], [1, 2, seeds[3], 4], SIZE, SIZE, STEPS))
    assert np.abs(ten[3] - alone).max() <= 1
    assert np.abs(mixed[2] - alone).max() <= 1
    assert np.abs(ten[3] - ten[4]).mean() > 1, "other seeds must give other images"


def test_nan_latents_and_black_images_are_reported_per_image(sdxl, monkeypatch):
    engine = engine_for(sdxl, "none", 5.0)
    real_predict, real_decode = sdxl.predict, sdxl.decode
    decoded = []

    def nan_for_the_second_image(latents, timestep, conditioning):
        output = real_predict(latents, timestep, conditioning).clone()
        output.view(2, -1, *output.shape[1:])[:, 1] = float("nan")  # 2 branches x 3 images
        return output

    def black_third_image(latents):
        decoded.append(latents)
        image = real_decode(latents)
        return torch.full_like(image, -1.0) if len(decoded) == 3 else image

    monkeypatch.setattr(sdxl, "predict", nan_for_the_second_image)
    monkeypatch.setattr(sdxl, "decode", black_third_image)
    images = engine.generate([SHORT, SHORT, OTHER], [1, 2, 3], SIZE, SIZE, 2)
    assert [image.degenerate for image in images] == [None, NONFINITE_LATENTS, BLACK]
    assert not pixels(images[1:]).any()


def test_degenerate_reasons():
    finite, image = torch.zeros(1, 4, 2, 2), np.zeros((4, 4, 3), dtype=np.uint8)
    image[0, 0] = (1, 2, 3)
    assert degenerate_reason(finite, torch.zeros(1, 3, 4, 4), image) is None
    assert (
        degenerate_reason(torch.full((1, 4, 2, 2), float("inf")), torch.zeros(1, 3, 4, 4), image) == NONFINITE_LATENTS
    )
    assert degenerate_reason(finite, torch.full((1, 3, 4, 4), float("nan")), image) == NONFINITE_PIXELS
    assert degenerate_reason(finite, torch.zeros(1, 3, 4, 4), np.zeros((4, 4, 3), dtype=np.uint8)) == BLACK
    assert degenerate_reason(finite, torch.zeros(1, 3, 4, 4), np.full((4, 4, 3), 128, dtype=np.uint8)) == CONSTANT
    gray_with_one_colour = np.full((4, 4, 3), 128, dtype=np.uint8)
    gray_with_one_colour[1, 2] = (128, 128, 129)
    assert degenerate_reason(finite, torch.zeros(1, 3, 4, 4), gray_with_one_colour) is None


def test_float16_sdxl_decodes_with_a_float32_vae(tiny_sdxl_snapshot):
    model = load_latent_model(tiny_sdxl_snapshot, torch.float16, torch.device("cpu"))
    assert model.denoiser.dtype == torch.float16
    assert model.vae.dtype == torch.float32


@pytest.mark.parametrize("snapshot", ["tiny_sd_snapshot", "tiny_sdxl_snapshot", "tiny_sd3_snapshot"])
def test_fused_projections_and_channels_last_make_the_same_images(snapshot, request):
    folder = request.getfixturevalue(snapshot)
    plain = load_latent_model(folder, torch.float32, torch.device("cpu"))
    faster = load_latent_model(folder, torch.float32, torch.device("cpu"))
    faster.speed_up(SpeedOptions(fuse_qkv=True, channels_last=True))
    fused = any("Fused" in type(processor).__name__ for processor in faster.denoiser.attn_processors.values())
    assert fused == faster.architecture.fusable_qkv  # SD 3.5's stay separate (a warning says so)
    scale = plain.architecture.guidance_scale
    made = [
        pixels(engine_for(model, "sld", scale).generate([SHORT, OTHER], [1, 2], SIZE, SIZE, 4))
        for model in (plain, faster)
    ]
    assert np.abs(made[0] - made[1]).max() <= 1


def test_compile_denoiser_compiles_the_denoiser_the_engine_calls(tiny_sd_snapshot, monkeypatch):
    model = load_latent_model(tiny_sd_snapshot, torch.float32, torch.device("cpu"))
    plain = model.denoiser
    compiled = []

    def compile_spy(module):  # compiling for real takes minutes on this CPU: the benchmark measures it
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", compile_spy)
    model.speed_up(SpeedOptions(compile_denoiser=True))
    assert compiled == [plain] and model.denoiser is plain


@pytest.mark.parametrize("name", ["none", "sld"])
def test_bfloat16_makes_nearly_the_float32_images_on_the_cpu(tiny_sd_snapshot, name):
    made = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = load_latent_model(tiny_sd_snapshot, dtype, torch.device("cpu"))
        assert model.denoiser.dtype == dtype
        made[dtype] = pixels(
            engine_for(model, name, model.architecture.guidance_scale).generate([SHORT, OTHER], [1, 2], SIZE, SIZE, 4)
        )
    difference = np.abs(made[torch.float32] - made[torch.bfloat16])
    assert 0 < difference.max() <= 8 and difference.mean() < 1.5, (difference.max(), difference.mean())
