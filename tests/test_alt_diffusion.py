"""AltDiffusion on the engine: the harness ran BAAI/AltDiffusion-m9 through diffusers'
AltDiffusionPipeline (XLM-R text encoder) in float32 at its defaults; the engine's images
are held to that pipeline's within 1/255, and every mitigation runs through the same
guidance terms as on Stable Diffusion (docs/protocol.md#altdiffusion)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from i2peval.generation.engine import Engine
from i2peval.generation.latent_models import load_latent_model
from i2peval.generation.mitigations import HARNESS_CONCEPT, resolve_mitigation
from i2peval.generation.seeds import image_generators
from i2peval.generation.text import TextOptions, token_ids

STEPS = 8
SIZE = 32
SHORT = "una manzana roja sobre una mesa de madera"
LONG = " ".join(["ein roter Apfel auf einem Holztisch, une pomme rouge sur une table en bois"] * 6)
CURLY = "\u201c a red apple \u201d"
MITIGATIONS = {
    "none": {"kind": "none"},
    "negative_prompt": {"kind": "negative_prompt"},
    "sega": {"kind": "sega", "preset": "max"},
    "sld": {"kind": "sld", "preset": "max"},
}


@pytest.fixture(scope="module")
def model(tiny_alt_snapshot):
    return load_latent_model(tiny_alt_snapshot, torch.float32, torch.device("cpu"))


@pytest.fixture(scope="module")
def oracle(tiny_alt_snapshot):
    from i2peval.models.architectures import load_alt_diffusion

    pipeline = load_alt_diffusion(tiny_alt_snapshot, torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    assert len(pipeline.tokenizer(LONG).input_ids) > 77
    return pipeline


def engine_for(model, name, **changes):
    mitigation = resolve_mitigation(name, {**MITIGATIONS[name], **changes}, HARNESS_CONCEPT)
    return Engine.for_mitigation(model, mitigation, 7.5)


def pixels(images):
    return np.stack([np.asarray(getattr(image, "image", image)) for image in images]).astype(int)


def starting_noise(seeds):
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor((len(seeds), 4, SIZE // 2, SIZE // 2), generator=image_generators(seeds), dtype=torch.float32)


@pytest.mark.parametrize("name", ["none", "negative_prompt"])
def test_alt_diffusion_equals_its_pipeline_called_the_harness_way(model, oracle, name):
    seeds = {SHORT: [3, 4], LONG: [5, 6]}
    arguments = {"negative_prompt": HARNESS_CONCEPT} if name == "negative_prompt" else {}
    expected = np.concatenate([
        pixels(oracle(text, num_images_per_prompt=2, latents=starting_noise(seeds[text]), num_inference_steps=STEPS,
                      height=SIZE, width=SIZE, **arguments).images)
        for text in (SHORT, LONG)
    ])
    ours = engine_for(model, name).generate([SHORT, LONG, SHORT, LONG], [3, 5, 4, 6], SIZE, SIZE, STEPS)
    assert np.abs(pixels(ours)[[0, 2, 1, 3]] - expected).max() <= 1


def test_alt_diffusion_prompts_are_not_cleaned_with_ftfy_and_long_ones_truncate(model):
    sega = engine_for(model, "sega")
    assert sega.text_options == TextOptions(cleaning="none", long_prompts="truncate")
    tokenizer = model.tokenizers[0]
    truncated, _ = token_ids(tokenizer, LONG, sega.text_options)
    assert len(truncated) == 77 and truncated[-1] == tokenizer.eos_token_id
    assert token_ids(tokenizer, CURLY, sega.text_options) != token_ids(tokenizer, '" a red apple "', sega.text_options)


@pytest.fixture(scope="module")
def images(model):
    return {name: pixels(engine_for(model, name).generate([SHORT, LONG], [3, 5], SIZE, SIZE, STEPS))
            for name in MITIGATIONS}


@pytest.mark.parametrize("name", ["negative_prompt", "sega", "sld"])
def test_each_mitigation_changes_the_alt_diffusion_image(images, name):
    assert np.abs(images[name] - images["none"]).mean() > 0.2


@pytest.mark.parametrize(
    "name, changes",
    [("sega", {"overrides": {"edit_guidance_scale": 0}}), ("sld", {"overrides": {"sld_guidance_scale": 1}})],
)
def test_alt_diffusion_guidance_switched_off_equals_plain_generation(model, images, name, changes):
    off = pixels(engine_for(model, name, **changes).generate([SHORT, LONG], [3, 5], SIZE, SIZE, STEPS))
    assert np.array_equal(off, images["none"])


@pytest.mark.parametrize("name", sorted(MITIGATIONS))
def test_alt_diffusion_image_does_not_depend_on_its_batch(model, images, name):
    alone = pixels(engine_for(model, name).generate([LONG], [5], SIZE, SIZE, STEPS))[0]
    assert np.abs(images[name][1] - alone).max() <= 1


def test_an_alt_diffusion_job_records_its_uncleaned_prompts_and_passes_the_aggregation_check(tmp_path):
    import json

    import polars as pl
    import pyarrow as pa

    from i2peval.generation.generate import GenerationSettings, run_generate_job
    from i2peval.metrics.manifests import ImageSettings, check_image_settings
    from i2peval.models.tiny import build_tiny_pipeline
    from i2peval.schemas import MANIFEST, PROMPTS, read_table, write_table

    snapshot = tmp_path / "snapshot"
    (tmp_path / "model.json").write_text(json.dumps(build_tiny_pipeline(snapshot, seed=1, architecture="alt")))
    rows = {"prompt_id": [0, 1], "shard": [0, 0], "text": [SHORT, CURLY], "categories": [["violence"]] * 2,
            "hard": [False] * 2, "seed": [7, 8], "guidance": [7.5] * 2, "width": [512] * 2, "height": [512] * 2}
    write_table(pa.table(rows), tmp_path / "prompts.parquet", PROMPTS)
    generation = {"steps": None, "guidance_scale": None, "resolution": SIZE, "dtype": "float32",
                  "prompt_cleaning": "ftfy"}
    sega = resolve_mitigation("sega", MITIGATIONS["sega"], HARNESS_CONCEPT)
    count = run_generate_job(
        prompts_path=tmp_path / "prompts.parquet", snapshot_dir=snapshot, model_record_path=tmp_path / "model.json",
        model_name="alt", mitigation=sega, settings=GenerationSettings(**{**generation, "steps": 2}),
        image_indices=[0], images_path=tmp_path / "images.parquet", manifest_path=tmp_path / "manifest.parquet",
        device="cpu", lock_dir=tmp_path / "locks",
    )  # fmt: skip
    assert count == 2
    manifest = pl.from_arrow(read_table(tmp_path / "manifest.parquet", MANIFEST))
    assert set(manifest["architecture"]) == {"alt"} and set(manifest["prompt_cleaning"]) == {"none"}
    assert {json.loads(settings)["long_prompts"] for settings in manifest["mitigation_settings"]} == {"truncate"}
    made_with = ImageSettings(models={"alt": {**generation, "steps": 2}}, mitigations={"sega": sega.settings()})
    check_image_settings(tmp_path / "manifest.parquet", manifest, made_with)
