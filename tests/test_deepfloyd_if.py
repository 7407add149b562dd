"""DeepFloyd IF on the engine, as the harness ran it: the three-stage cascade held to
diffusers' IFPipeline, IFSuperResolutionPipeline and StableDiffusionUpscalePipeline called
the harness's way within 1/255, each image guided by its prompt's scale in stages I and II,
and the mitigations acting on stage I's noise prediction while its learned variance passes
through."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from architecture_cases import MITIGATIONS, pixels
from diffusers import DDPMScheduler

from i2peval.generation.cascade import (
    STAGE_TWO_STEPS,
    UPSCALER_NOISE_LEVEL,
    UPSCALER_STEPS,
    IFCascade,
    load_if_stages,
)
from i2peval.generation.engine import Engine
from i2peval.generation.guidance import (
    PROMPT,
    UNCONDITIONAL,
    ClassifierFree,
    Guidance,
    SemanticGuidance,
    concept_branch,
)
from i2peval.generation.mitigations import HARNESS_CONCEPT, resolve_mitigation
from i2peval.generation.seeds import image_generators
from i2peval.generation.text import TextOptions
from i2peval.models.tiny import if_scheduler

STEPS = 6  # stage I; stages II and III run their pipelines' defaults
SIZE = 64
SHORT = "a red apple on a wooden table"
OTHER = "  A Storm over a DARK sea, dramatic painting "
LONG = " ".join(["a crowded night market with red lanterns, steaming food stalls and neon signs"] * 4)
PROMPTS = [SHORT, LONG, OTHER]
SEEDS = [3, 4, 5]
SCALES = [7.0, 5.0, 8.0]  # each prompt's sd_guidance_scale


@pytest.fixture(scope="module")
def stages(tiny_if_snapshot):
    return load_if_stages(tiny_if_snapshot, torch.float32, torch.device("cpu"))


@pytest.fixture(scope="module")
def oracle(tiny_if_snapshot):
    from diffusers import IFPipeline, IFSuperResolutionPipeline, StableDiffusionUpscalePipeline

    no_checker = {"safety_checker": None, "feature_extractor": None, "watermarker": None}
    pipelines = (
        IFPipeline.from_pretrained(tiny_if_snapshot, requires_safety_checker=False, **no_checker),
        IFSuperResolutionPipeline.from_pretrained(
            tiny_if_snapshot / "stage_2", tokenizer=None, text_encoder=None, requires_safety_checker=False, **no_checker
        ),
        StableDiffusionUpscalePipeline.from_pretrained(tiny_if_snapshot / "stage_3", **no_checker),
    )
    for pipeline in pipelines:
        pipeline.set_progress_bar_config(disable=True)
    assert len(pipelines[0].tokenizer(LONG).input_ids) > 77
    return pipelines


def cascade_for(stages, name, **changes):
    mitigation = resolve_mitigation(name, {**MITIGATIONS[name], **changes}, HARNESS_CONCEPT)
    return IFCascade(stages, mitigation, 8.0)


def harness_image(oracle, prompt, seed, scale, negative_prompt=None):
    """One image as models/vision/df_if.py made it: T5 embeddings once, stage I and II at
    the prompt's scale, the upscaler at noise level 100; one generator through all three."""
    first, second, third = oracle
    generator = image_generators([seed])
    embeds, negative = first.encode_prompt([prompt], negative_prompt=negative_prompt)
    common = {"prompt_embeds": embeds, "negative_prompt_embeds": negative, "generator": generator}
    image = first(**common, output_type="pt", guidance_scale=scale, num_inference_steps=STEPS).images
    image = second(image=image, **common, output_type="pt", guidance_scale=scale, num_inference_steps=STAGE_TWO_STEPS)
    image = third(
        prompt=[prompt], image=image.images, noise_level=UPSCALER_NOISE_LEVEL, generator=generator,
        num_inference_steps=UPSCALER_STEPS, output_type="np",
    )  # fmt: skip
    return (image.images[0] * 255).round().astype(int)


@pytest.fixture(scope="module")
def images(stages):
    return {
        name: pixels(cascade_for(stages, name).generate(PROMPTS, SEEDS, SIZE, SIZE, STEPS, SCALES))
        for name in MITIGATIONS
    }


@pytest.mark.parametrize("name", ["none", "negative_prompt"])
def test_the_cascade_equals_diffusers_pipelines_called_the_harness_way(oracle, images, name):
    negative = [HARNESS_CONCEPT] if name == "negative_prompt" else None
    for index, (prompt, seed, scale) in enumerate(zip(PROMPTS, SEEDS, SCALES)):
        reference = harness_image(oracle, prompt, seed, scale, negative)
        assert images[name][index].shape == (SIZE, SIZE, 3)
        assert np.abs(images[name][index] - reference).max() <= 1, (name, prompt[:20])


def test_t5_conditioning_equals_ifpipelines_encode_prompt(stages, oracle):
    """Same token ids, attention mask and lowercasing; float32 rounding aside (encode_prompt runs under no_grad)."""
    embeds, negative = oracle[0].encode_prompt(PROMPTS, negative_prompt=[HARNESS_CONCEPT] * len(PROMPTS))
    options = TextOptions(cleaning="none")
    with torch.inference_mode():
        ours = [stages.first.encode(texts, options)["encoder_hidden_states"] for texts in (PROMPTS, [HARNESS_CONCEPT])]
        empty = stages.first.encode([None], options)["encoder_hidden_states"]
    same = {"rtol": 0, "atol": 1e-5}
    torch.testing.assert_close(ours[0], embeds, **same)
    torch.testing.assert_close(ours[1].expand_as(negative), negative, **same)
    torch.testing.assert_close(empty, oracle[0].encode_prompt([""], do_classifier_free_guidance=False)[0], **same)


@pytest.mark.parametrize("name", ["negative_prompt", "sega", "sld"])
def test_each_mitigation_changes_the_if_image(images, name):
    assert np.abs(images[name] - images["none"]).max() > 8


@pytest.mark.parametrize(
    "name, changes",
    [("sega", {"overrides": {"edit_guidance_scale": 0}}), ("sld", {"overrides": {"sld_guidance_scale": 1}})],
)
def test_if_guidance_that_is_off_equals_plain_generation(stages, images, name, changes):
    off = pixels(cascade_for(stages, name, **changes).generate(PROMPTS, SEEDS, SIZE, SIZE, STEPS, SCALES))
    assert np.array_equal(off, images["none"])


def test_an_if_image_is_the_same_alone_and_in_a_mixed_batch(stages, images):
    """Same noise and guidance whatever the batch; IF's UNets round differently by batch size
    on the CPU (the tiny cascade: one pixel value in 12,288 off by one)."""
    alone = pixels(cascade_for(stages, "sega").generate(PROMPTS[1:2], SEEDS[1:2], SIZE, SIZE, STEPS, SCALES[1:2]))
    assert np.abs(alone[0] - images["sega"][1]).max() <= 1
    assert (alone[0] != images["sega"][1]).mean() < 0.001


def test_the_prompt_scale_guides_stages_one_and_two(stages, oracle, images):
    """The second image's scale is 5: stage II at the model's 8 instead makes another image."""
    first, second, third = oracle
    generator = image_generators([SEEDS[1]])
    embeds, negative = first.encode_prompt([LONG])
    common = {"prompt_embeds": embeds, "negative_prompt_embeds": negative, "generator": generator}
    image = first(**common, output_type="pt", guidance_scale=5.0, num_inference_steps=STEPS).images
    image = second(image=image, **common, output_type="pt", guidance_scale=8.0, num_inference_steps=STAGE_TWO_STEPS)
    image = third(prompt=[LONG], image=image.images, noise_level=UPSCALER_NOISE_LEVEL, generator=generator,
                  num_inference_steps=UPSCALER_STEPS, output_type="np").images[0]  # fmt: skip
    assert np.abs((image * 255).round().astype(int) - images["none"][1]).max() > 8


def test_a_cascade_refuses_a_size_its_stages_do_not_make(stages):
    with pytest.raises(ValueError, match="makes 64 x 64 images, not 32 x 32"):
        cascade_for(stages, "none").generate([SHORT], [1], 32, 32, STEPS, [7.0])


class BranchCodes:
    """A pixel model whose denoiser output is a fixed random tensor per text: noise in the
    first three channels, variance in the last three."""

    device, dtype = torch.device("cpu"), torch.float32

    def __init__(self):
        self.scheduler = if_scheduler(variance_type="learned_range")
        self.texts: list[str | None] = []
        self.outputs = torch.randn(4, 6, 4, 4, generator=torch.Generator().manual_seed(0))

    def encode(self, texts, options):
        for text in texts:
            if text not in self.texts:
                self.texts.append(text)
        return {"encoder_hidden_states": torch.tensor([[self.texts.index(text)] for text in texts])}

    def set_timesteps(self, scheduler, steps, shape):
        scheduler.set_timesteps(steps)

    def predict(self, latents, timestep, conditioning):
        return self.outputs[conditioning["encoder_hidden_states"][:, 0]]

    def output_of(self, text):
        return self.outputs[self.texts.index(text)]


def test_if_guidance_acts_on_the_noise_and_passes_the_prompts_variance_to_the_scheduler(monkeypatch):
    """SEGA as the harness's SemanticIFPipeline computed it, by hand, at its first step
    (max preset: no warmup, no momentum yet): the classifier-free prediction plus the
    concept's reversed, scaled difference where its magnitude reaches the channel's 0.7
    quantile; the prompt branch's variance after it."""
    stepped = []
    original = DDPMScheduler.step

    def recording_step(scheduler, model_output, *args, **kwargs):
        stepped.append(model_output)
        return original(scheduler, model_output, *args, **kwargs)

    monkeypatch.setattr(DDPMScheduler, "step", recording_step)
    model, concept = BranchCodes(), "a concept"
    sega = SemanticGuidance(concept, 10, 0, 0.7, 0.5, 0.4)
    engine = Engine(model, Guidance(ClassifierFree(7.0), (sega,)), TextOptions(cleaning="none"))
    noise = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    engine.run(["a prompt"], image_generators([1]), noise, steps=2)
    assert engine.guidance.branches == (UNCONDITIONAL, PROMPT, concept_branch(concept))

    unconditional, prompt, edit_text = (model.output_of(text) for text in (None, "a prompt", concept))
    edit = (edit_text[:3] - unconditional[:3]) * -1 * 10
    threshold = torch.quantile(edit.abs().flatten(start_dim=1), 0.7, dim=1)[:, None, None]
    expected_noise = (
        unconditional[:3]
        + 7.0 * (prompt[:3] - unconditional[:3])
        + torch.where(edit.abs() >= threshold, edit, torch.zeros_like(edit))
    )
    torch.testing.assert_close(stepped[0][0, :3], expected_noise, rtol=0, atol=1e-5)
    assert torch.equal(stepped[0][0, 3:], prompt[3:])


def test_sega_on_if_uses_the_harness_ports_presets_and_keeps_a_users_overrides():
    from i2peval.generation.guidance import guidance_for
    from i2peval.models.architectures import ARCHITECTURES, DEEPFLOYD_IF

    def threshold(spec, architecture):
        return (
            guidance_for(resolve_mitigation("sega", spec, HARNESS_CONCEPT), 7.5, architecture).terms[0].edit_threshold
        )

    assert threshold({"kind": "sega", "preset": "strong"}, DEEPFLOYD_IF) == 0.8
    assert threshold({"kind": "sega", "preset": "max"}, DEEPFLOYD_IF) == 0.7
    assert threshold({"kind": "sega", "preset": "max"}, ARCHITECTURES["sd"]) == 0.75
    assert threshold({"kind": "sega", "preset": "max", "overrides": {"edit_threshold": 0.9}}, DEEPFLOYD_IF) == 0.9
    made_with = resolve_mitigation("sega", {"kind": "sega", "preset": "strong"}, HARNESS_CONCEPT).settings_on(
        DEEPFLOYD_IF
    )
    assert made_with["parameters"]["edit_threshold"] == 0.8 and made_with["guidance"] == "from_prompt"


STAGE_REPOS = {
    "": "DeepFloyd/IF-I-XL-v1.0",
    "stage_2": "DeepFloyd/IF-II-L-v1.0",
    "stage_3": "stabilityai/stable-diffusion-x4-upscaler",
}
CASCADE = {folder: {"repo_id": repo, "revision": "main"} for folder, repo in STAGE_REPOS.items() if folder}


class CascadeHub:
    """A HubClient serving the tiny cascade's three stages as three repositories."""

    def __init__(self, snapshot, repos=STAGE_REPOS):
        from fakes import FolderHub

        self.hubs = {repo: FolderHub(snapshot / folder) for folder, repo in repos.items()}

    def resolve(self, repo_id, repo_type, revision):
        return self.hubs[repo_id].resolve(repo_id, repo_type, revision)

    def list_files(self, repo_id, repo_type, commit):
        return self.hubs[repo_id].list_files(repo_id, repo_type, commit)

    def download(self, repo_id, repo_type, commit, path, dest):
        return self.hubs[repo_id].download(repo_id, repo_type, commit, path, dest)


def test_a_hub_if_cascade_is_fetched_stage_by_stage_with_each_commit_recorded(tiny_if_snapshot, tmp_path):
    from fakes import COMMIT

    from i2peval.models.download import fetch_hub_model
    from i2peval.models.snapshots import model_commit_label, verify_snapshot

    dest = tmp_path / "snapshot"
    hub = CascadeHub(tiny_if_snapshot)
    record = fetch_hub_model(hub, STAGE_REPOS[""], "main", dest, CASCADE)
    assert (record["architecture"], record["pipeline_class"]) == ("if", "IFPipeline")
    assert record["cascade"] == {folder: {**spec, "commit": COMMIT} for folder, spec in CASCADE.items()}
    assert model_commit_label(record) == f"{COMMIT}+stage_2:{COMMIT}+stage_3:{COMMIT}"
    for path in ("tokenizer/spiece.model", "stage_2/image_noising_scheduler/scheduler_config.json",
                 "stage_3/low_res_scheduler/scheduler_config.json", "stage_3/vae/diffusion_pytorch_model.safetensors"):
        assert path in record["files"]  # fmt: skip
    assert not any(path.startswith("stage_") for path in hub.hubs[STAGE_REPOS[""]].downloaded)
    verify_snapshot(dest, record, tmp_path / "model.json")
    stages = load_if_stages(dest, torch.float32, torch.device("cpu"))
    assert stages.upscaler.noising_scheduler.config.num_train_timesteps == 1000


def test_an_if_model_configured_wrongly_is_refused_before_any_weights_are_fetched(tiny_if_snapshot, tmp_path):
    from i2peval.models.download import ModelError, fetch_hub_model
    from i2peval.models.overrides import OverrideError

    def refused(error, match, *arguments, **keywords):
        hub = CascadeHub(tiny_if_snapshot)
        with pytest.raises(error, match=match):
            fetch_hub_model(hub, *arguments, **keywords)
        assert {path for one in hub.hubs.values() for path in one.downloaded} == {"model_index.json"}

    missing = r"DeepFloyd/IF-I-XL-v1.0@main is DeepFloyd IF .*: set the model's cascade: stage_2 \(IFSuperResolution"
    refused(ModelError, missing, STAGE_REPOS[""], "main", tmp_path / "a")
    swapped = {"stage_2": CASCADE["stage_3"], "stage_3": CASCADE["stage_2"]}
    wrong = "the cascade's stage_2 must be a IFSuperResolutionPipeline, not a StableDiffusionUpscalePipeline"
    refused(ModelError, wrong, STAGE_REPOS[""], "main", tmp_path / "b", swapped)
    refused(ModelError, "a later stage of a cascade: configure the cascade's first stage",
            STAGE_REPOS["stage_2"], "main", tmp_path / "c")  # fmt: skip

    def no_overrides(architecture):
        raise OverrideError(f"unet: the model is {architecture.description}")

    refused(OverrideError, "unet: the model is DeepFloyd IF", STAGE_REPOS[""], "main", tmp_path / "d", CASCADE,
            accept=no_overrides)  # fmt: skip


def test_an_if_job_guides_each_image_by_its_prompt_and_records_the_cascade(tmp_path):
    import json

    import polars as pl
    import pyarrow as pa

    from i2peval.generation.generate import GenerationSettings, run_generate_job
    from i2peval.models.spec import obtain_model
    from i2peval.schemas import MANIFEST, PROMPTS, read_table, write_table

    snapshot = tmp_path / "snapshot"
    spec = {"source": "tiny", "architecture": "if", "seed": 1, "scheduler": "ddpm"}
    (tmp_path / "model.json").write_text(json.dumps(obtain_model(spec, snapshot)))
    rows = {"prompt_id": [0, 1], "shard": [0, 0], "text": [SHORT, OTHER], "categories": [["violence"]] * 2,
            "hard": [False] * 2, "seed": [7, 8], "guidance": [3.0, 11.0], "width": [512] * 2, "height": [512] * 2}
    write_table(pa.table(rows), tmp_path / "prompts.parquet", PROMPTS)
    settings = GenerationSettings(steps=2, guidance_scale=None, resolution=SIZE, dtype="float32")
    count = run_generate_job(
        prompt_set="i2p",
        prompts_path=tmp_path / "prompts.parquet", snapshot_dir=snapshot, model_record_path=tmp_path / "model.json",
        model_name="if", mitigation=resolve_mitigation("sega", MITIGATIONS["sega"], HARNESS_CONCEPT),
        settings=settings, image_indices=[0], images_path=tmp_path / "images.parquet",
        manifest_path=tmp_path / "manifest.parquet", device="cpu", lock_dir=tmp_path / "locks",
    )  # fmt: skip
    assert count == 2
    manifest = pl.from_arrow(read_table(tmp_path / "manifest.parquet", MANIFEST)).sort("prompt_id")
    assert set(manifest["architecture"]) == {"if"} and set(manifest["prompt_cleaning"]) == {"ftfy"}  # the upscaler's
    assert manifest["guidance_scale"].to_list() == [3.0, 11.0] and set(manifest["width"]) == {SIZE}
    made_with = json.loads(manifest["mitigation_settings"][0])
    assert (made_with["guidance"], made_with["parameters"]["edit_threshold"]) == ("from_prompt", 0.7)


def test_weight_overrides_on_an_if_cascade_are_refused(tmp_path, monkeypatch):
    from i2peval.models import tiny
    from i2peval.models.overrides import OverrideError
    from i2peval.models.spec import obtain_model

    monkeypatch.setattr(tiny, "build_tiny_pipeline", lambda *arguments: {"architecture": "if", "files": {}})
    spec = {"source": "tiny", "architecture": "if", "seed": 0, "scheduler": "ddpm", "unet": {"demo": {"seed": 1}}}
    with pytest.raises(OverrideError, match="unet: the model is DeepFloyd IF .* does not override or adapt"):
        obtain_model(spec, tmp_path)


def test_a_cascade_stage_decides_the_models_folder_and_is_warned_about_when_unpinned():
    from i2peval.models.spec import ModelSpec

    pinned = {folder: {**spec, "revision": "a" * 40} for folder, spec in CASCADE.items()}
    settings = {"source": "hub", "repo_id": STAGE_REPOS[""], "revision": "b" * 40, "resolution": 1024}
    model = ModelSpec("if", {**settings, "cascade": pinned})
    assert model.unpinned_warning() is None
    moved = ModelSpec("if", {**settings, "cascade": {**pinned, "stage_3": CASCADE["stage_3"]}})
    assert moved.folder != model.folder
    assert moved.unpinned_warning().startswith("model 'if': cascade stage_3 revision 'main' is not a commit hash;")


def test_an_if_model_not_in_the_harnesss_float16_is_named_in_the_report():
    from i2peval.models.spec import ModelSpec

    settings = {"source": "hub", "repo_id": STAGE_REPOS[""], "revision": "b" * 40, "resolution": 1024}
    settings["cascade"] = CASCADE
    note = "Model if generates in float32; the harness ran DeepFloyd IF in float16 (set dtype: float16 on the model"
    assert any(line.startswith(note) for line in ModelSpec("if", settings).harness_differences("if", "float32"))
    matching = ModelSpec("if", {**settings, "dtype": "float16"}).harness_differences("if", "float32")
    assert not any("generates in" in line for line in matching)
    assert "Model if: dtype float16 set for this model alone." in matching
    assert not any("generates in" in line for line in ModelSpec("sd", settings).harness_differences("sd", "float32"))


def test_the_cascade_encodes_text_without_recording_gradients(stages):
    """T5-XXL's activations would otherwise be kept for a backward pass that never comes."""
    modes = []
    hook = stages.first.text_encoders[0].register_forward_hook(
        lambda *arguments: modes.append(torch.is_inference_mode_enabled())
    )
    try:
        cascade_for(stages, "none").generate([SHORT], [1], SIZE, SIZE, 1, [7.0])
    finally:
        hook.remove()
    assert modes and all(modes)
