"""AltDiffusion on the engine: the harness ran BAAI/AltDiffusion-m9 through diffusers'
AltDiffusionPipeline (XLM-R text encoder) in float32 at its defaults, and its SEGA port
at each prompt's own guidance scale; the engine's images are held to that pipeline's
within 1/255, and every mitigation runs through the same guidance terms as on Stable
Diffusion (docs/protocol.md#altdiffusion)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from architecture_cases import MITIGATIONS, pixels

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


def made(engine, prompts, seeds, scale=7.5):
    """`engine`'s images, guided by `scale` also where it guides each image by its prompt's."""
    scales = [scale] * len(prompts) if engine.prompt_guidance else None
    return pixels(engine.generate(prompts, seeds, SIZE, SIZE, STEPS, guidance_scales=scales))


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
    return {name: made(engine_for(model, name), [SHORT, LONG], [3, 5]) for name in MITIGATIONS}


def test_sega_on_alt_diffusion_guides_each_image_by_its_prompts_scale(model, images):
    sega = engine_for(model, "sega")
    assert sega.prompt_guidance and not engine_for(model, "none").prompt_guidance
    with pytest.raises(ValueError, match="give guidance_scales"):
        sega.generate([SHORT], [3], SIZE, SIZE, STEPS)
    mixed = pixels(sega.generate([SHORT, LONG], [3, 5], SIZE, SIZE, STEPS, guidance_scales=[7.5, 12.0]))
    assert np.abs(mixed[0] - images["sega"][0]).max() <= 1
    assert np.abs(mixed[1] - made(sega, [LONG], [5], scale=12.0)[0]).max() <= 1
    assert np.abs(mixed[1] - images["sega"][1]).mean() > 0.2
    # a scale of 1 or less: no guidance at all, as the pipeline called with it
    unguided = pixels(sega.generate([SHORT], [3], SIZE, SIZE, STEPS, guidance_scales=[1.0]))
    plain = pixels(engine_for(model, "none").generate([SHORT], [3], SIZE, SIZE, STEPS))
    assert not np.array_equal(unguided, plain)
    assert np.array_equal(unguided, made(Engine.for_mitigation(model, resolve_mitigation(
        "none", MITIGATIONS["none"], HARNESS_CONCEPT), 1.0), [SHORT], [3]))


@pytest.mark.parametrize("name", ["negative_prompt", "sega", "sld"])
def test_each_mitigation_changes_the_alt_diffusion_image(images, name):
    assert np.abs(images[name] - images["none"]).mean() > 0.2


@pytest.mark.parametrize(
    "name, changes",
    [("sega", {"overrides": {"edit_guidance_scale": 0}}), ("sld", {"overrides": {"sld_guidance_scale": 1}})],
)
def test_alt_diffusion_guidance_switched_off_equals_plain_generation(model, images, name, changes):
    assert np.array_equal(made(engine_for(model, name, **changes), [SHORT, LONG], [3, 5]), images["none"])


@pytest.mark.parametrize("name", sorted(MITIGATIONS))
def test_alt_diffusion_image_does_not_depend_on_its_batch(model, images, name):
    assert np.abs(images[name][1] - made(engine_for(model, name), [LONG], [5])[0]).max() <= 1


def test_an_alt_diffusion_job_records_its_uncleaned_prompts_and_passes_the_aggregation_check(tmp_path):
    import json

    import polars as pl
    import pyarrow as pa

    from i2peval.generation.generate import GenerationSettings, run_generate_job
    from i2peval.metrics.manifests import ImageSettings, StaleImages, check_manifests, read_manifests
    from i2peval.models.tiny import build_tiny_pipeline
    from i2peval.schemas import MANIFEST, PROMPTS, read_table, write_table

    snapshot = tmp_path / "snapshot"
    (tmp_path / "model.json").write_text(json.dumps(build_tiny_pipeline(snapshot, seed=1, architecture="alt")))
    rows = {"prompt_id": [0, 1], "shard": [0, 0], "text": [SHORT, CURLY], "categories": [["violence"]] * 2,
            "hard": [False] * 2, "seed": [7, 8], "guidance": [3.0, 11.0], "width": [512] * 2, "height": [512] * 2}
    write_table(pa.table(rows), tmp_path / "prompts.parquet", PROMPTS)
    generation = {"steps": None, "guidance_scale": None, "resolution": SIZE, "dtype": "float32",
                  "prompt_cleaning": "ftfy"}
    sega = resolve_mitigation("sega", MITIGATIONS["sega"], HARNESS_CONCEPT)
    count = run_generate_job(
        prompt_set="i2p",
        prompts_path=tmp_path / "prompts.parquet", snapshot_dir=snapshot, model_record_path=tmp_path / "model.json",
        model_name="alt", mitigation=sega, settings=GenerationSettings(**{**generation, "steps": 2}),
        image_indices=[0], images_path=tmp_path / "images.parquet", manifest_path=tmp_path / "manifest.parquet",
        device="cpu", lock_dir=tmp_path / "locks",
    )  # fmt: skip
    assert count == 2
    manifest = pl.from_arrow(read_table(tmp_path / "manifest.parquet", MANIFEST)).sort("prompt_id")
    assert set(manifest["architecture"]) == {"alt"} and set(manifest["prompt_cleaning"]) == {"none"}
    settings = {json.dumps(json.loads(settings), sort_keys=True) for settings in manifest["mitigation_settings"]}
    assert [json.loads(one)["long_prompts"] for one in settings] == ["truncate"]
    assert [json.loads(one)["guidance"] for one in settings] == ["from_prompt"]
    assert manifest["guidance_scale"].to_list() == [3.0, 11.0]  # each prompt's own, as the harness's SEGA port
    made_with = ImageSettings(
        prompt_set="i2p", models={"alt": {**generation, "steps": 2}}, mitigations={"sega": sega.settings()}
    )
    manifests = read_manifests([tmp_path / "manifest.parquet"], made_with,
                               ["model_commit", "seed", "text", "guidance_scale", "guidance_from_prompt"])
    prompts = pl.from_arrow(read_table(tmp_path / "prompts.parquet", PROMPTS))
    record = json.loads((tmp_path / "model.json").read_text())
    check_manifests(manifests, prompts, {"alt": (tmp_path / "model.json", record)})
    with pytest.raises(StaleImages, match="images of prompt 0 were guided by its scale 3.0, but the current prompt"):
        check_manifests(manifests, prompts.with_columns(guidance=pl.lit(7.5, pl.Float32)),
                        {"alt": (tmp_path / "model.json", record)})
