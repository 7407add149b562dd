"""Stable Diffusion 3.5 on the engine, beyond the paper: images held to diffusers'
StableDiffusion3Pipeline within 1/255, text conditioning to its encode_prompt, and every
mitigation through the same guidance terms as on Stable Diffusion, acting on the flow's
predicted velocity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from architecture_cases import MITIGATIONS, pixels

from i2peval.generation.engine import Engine
from i2peval.generation.latent_models import load_latent_model
from i2peval.generation.mitigations import HARNESS_CONCEPT, resolve_mitigation
from i2peval.generation.seeds import image_generators, image_seed
from i2peval.generation.text import TextOptions
from i2peval.models.download import select_pipeline_files

STEPS = 8
SIZE = 32
SHORT = "a red apple on a wooden table"
OTHER = "a storm over a dark sea, dramatic painting"
LONG = " ".join(["a crowded night market with red lanterns, steaming food stalls and neon signs"] * 8)


@pytest.fixture(scope="module")
def model(tiny_sd3_snapshot):
    return load_latent_model(tiny_sd3_snapshot, torch.float32, torch.device("cpu"))


@pytest.fixture(scope="module")
def oracle(tiny_sd3_snapshot):
    from diffusers import StableDiffusion3Pipeline

    pipeline = StableDiffusion3Pipeline.from_pretrained(tiny_sd3_snapshot, image_encoder=None, feature_extractor=None)
    pipeline.set_progress_bar_config(disable=True)
    assert len(pipeline.tokenizer(LONG).input_ids) > 77 and len(pipeline.tokenizer_3(LONG).input_ids) > 256
    return pipeline


def engine_for(model, name, **changes):
    mitigation = resolve_mitigation(name, {**MITIGATIONS[name], **changes}, HARNESS_CONCEPT)
    return Engine.for_mitigation(model, mitigation, 7.0)


def starting_noise(seeds):
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor((len(seeds), 16, SIZE // 2, SIZE // 2), generator=image_generators(seeds), dtype=torch.float32)


@pytest.mark.parametrize("name", ["none", "negative_prompt"])
def test_sd3_equals_its_pipeline_for_short_and_long_prompts_in_one_batch(model, oracle, name):
    seeds = {SHORT: [3, 4], LONG: [5, 6]}
    arguments = {"negative_prompt": HARNESS_CONCEPT} if name == "negative_prompt" else {}
    expected = np.concatenate([
        pixels(oracle(text, num_images_per_prompt=2, latents=starting_noise(seeds[text]), num_inference_steps=STEPS,
                      guidance_scale=7.0, height=SIZE, width=SIZE, **arguments).images)
        for text in (SHORT, LONG)
    ])  # fmt: skip
    ours = engine_for(model, name).generate([SHORT, LONG, SHORT, LONG], [3, 5, 4, 6], SIZE, SIZE, STEPS)
    assert np.abs(pixels(ours)[[0, 2, 1, 3]] - expected).max() <= 1


def test_sd3_text_conditioning_equals_its_pipelines_encode_prompt(model, oracle):
    options = TextOptions(cleaning="none")
    ours = model.encode([SHORT, LONG, None], options)
    prompt, negative, pooled, negative_pooled = oracle.encode_prompt(
        [SHORT, LONG], [SHORT, LONG], [SHORT, LONG], negative_prompt=["", ""], do_classifier_free_guidance=True
    )
    assert ours["encoder_hidden_states"].shape == (3, 77 + 256, 64)
    torch.testing.assert_close(ours["encoder_hidden_states"][:2], prompt)
    torch.testing.assert_close(ours["pooled_projections"][:2], pooled)
    torch.testing.assert_close(ours["encoder_hidden_states"][2], negative[0])
    torch.testing.assert_close(ours["pooled_projections"][2], negative_pooled[0])


@pytest.mark.parametrize(
    "name, changes",
    [("sega", {"overrides": {"edit_guidance_scale": 0}}), ("sld", {"overrides": {"sld_guidance_scale": 1}})],
)
def test_sd3_guidance_that_is_off_equals_plain_generation(model, name, changes):
    seeds = [image_seed(1001, index) for index in range(2)]
    plain = engine_for(model, "none").generate([SHORT, LONG], seeds, SIZE, SIZE, STEPS)
    off = engine_for(model, name, **changes).generate([SHORT, LONG], seeds, SIZE, SIZE, STEPS)
    assert np.array_equal(pixels(plain), pixels(off))


@pytest.fixture(scope="module")
def images(model):
    seeds = [image_seed(1001, index) for index in range(2)]
    return {
        name: pixels(engine_for(model, name).generate([SHORT, OTHER], seeds, SIZE, SIZE, STEPS)) for name in MITIGATIONS
    }


@pytest.mark.parametrize("name", ["negative_prompt", "sega", "sld"])
def test_each_mitigation_changes_the_sd3_image(images, name):
    for index in range(2):
        assert np.abs(images[name][index] - images["none"][index]).mean() > 0.5


@pytest.mark.parametrize("name", ["none", "sld"])
def test_an_sd3_image_is_the_same_alone_and_in_a_mixed_batch(model, name):
    engine = engine_for(model, name)
    alone = pixels(engine.generate([LONG], [77], SIZE, SIZE, STEPS))[0]
    mixed = pixels(engine.generate([SHORT, "", LONG, OTHER], [1, 2, 77, 4], SIZE, SIZE, STEPS))
    assert np.abs(mixed[2] - alone).max() <= 1


def test_sd3_runs_in_bfloat16_close_to_float32(tiny_sd3_snapshot, images):
    half = load_latent_model(tiny_sd3_snapshot, torch.bfloat16, torch.device("cpu"))
    seeds = [image_seed(1001, index) for index in range(2)]
    made = engine_for(half, "none").generate([SHORT, OTHER], seeds, SIZE, SIZE, STEPS)
    assert all(image.degenerate is None for image in made)
    assert np.abs(pixels(made) - images["none"]).mean() < 8


# An SD 3.5 style repository: a single-file checkpoint beside the diffusers folders, the T5
# encoder's weights in two shards with their index, fp16 variants of them, T5's sentencepiece model
SD3_REPO_FILES = [
    "README.md", "LICENSE.md", "model_index.json", "sd3.5_medium.safetensors",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json", "text_encoder/model.safetensors", "text_encoder/model.fp16.safetensors",
    "text_encoder_2/config.json", "text_encoder_2/model.safetensors",
    "text_encoder_3/config.json", "text_encoder_3/model-00001-of-00002.safetensors",
    "text_encoder_3/model-00002-of-00002.safetensors", "text_encoder_3/model.safetensors.index.json",
    "text_encoder_3/model.fp16-00001-of-00002.safetensors", "text_encoder_3/model.safetensors.index.fp16.json",
    "text_encoders/clip_g.safetensors", "text_encoders/t5xxl_fp16.safetensors",
    "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json", "tokenizer_2/merges.txt", "tokenizer_2/special_tokens_map.json",
    "tokenizer_2/tokenizer_config.json", "tokenizer_2/vocab.json", "tokenizer_3/special_tokens_map.json",
    "tokenizer_3/spiece.model", "tokenizer_3/tokenizer.json", "tokenizer_3/tokenizer_config.json",
    "transformer/config.json", "transformer/diffusion_pytorch_model.safetensors",
    "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
]  # fmt: skip


def test_an_sd3_repository_is_fetched_with_its_sharded_t5_weights_and_no_variants():
    from i2peval.models.architectures import ARCHITECTURES

    selected = select_pipeline_files(SD3_REPO_FILES, "org/sd3", ARCHITECTURES["sd3"])
    assert [path for path in selected if path.startswith("text_encoder_3/")] == [
        "text_encoder_3/config.json",
        "text_encoder_3/model-00001-of-00002.safetensors",
        "text_encoder_3/model-00002-of-00002.safetensors",
        "text_encoder_3/model.safetensors.index.json",
    ]
    assert "tokenizer_3/spiece.model" in selected and "transformer/diffusion_pytorch_model.safetensors" in selected
    assert not any(path.startswith("text_encoders/") or "fp16" in path or path.count("/") == 0 and path.endswith(
        ".safetensors") for path in selected)  # fmt: skip


def test_a_unet_override_on_an_sd3_model_is_refused_naming_its_weights(tmp_path, monkeypatch):
    from i2peval.models import tiny
    from i2peval.models.overrides import OverrideError
    from i2peval.models.spec import obtain_model

    monkeypatch.setattr(tiny, "build_tiny_pipeline", lambda *arguments: {"architecture": "sd3", "files": {}})
    spec = {"source": "tiny", "architecture": "sd3", "seed": 0, "scheduler": "flow_match"}
    spec["unet"] = {"demo": {"seed": 1}}
    with pytest.raises(OverrideError, match=r"unet override: the model is Stable Diffusion 3/3.5 .* has no unet "
                                            r"\(its weights: transformer, vae, text_encoder"):  # fmt: skip
        obtain_model(spec, tmp_path)


def test_a_hub_sd3_snapshot_is_fetched_with_its_architecture_and_flow_recorded(tiny_sd3_snapshot, tmp_path):
    from fakes import FolderHub

    from i2peval.models.download import fetch_hub_model

    record = fetch_hub_model(FolderHub(tiny_sd3_snapshot), "org/sd3", "main", tmp_path / "snapshot")
    assert (record["architecture"], record["prediction_type"]) == ("sd3", "flow")
    assert "tokenizer_3/spiece.model" in record["files"] and "transformer/config.json" in record["files"]
