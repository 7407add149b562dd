import io
import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

import i2peval.generation.generate
from i2peval.generation.engine import Engine
from i2peval.generation.generate import (
    AUTO_BATCH_CEILING,
    CPU_BATCH_SIZE,
    GenerationSettings,
    resolved_batch_size,
    run_generate_job,
)
from i2peval.generation.mitigations import HARNESS_CONCEPT, resolve_mitigation
from i2peval.generation.seeds import image_seed
from i2peval.models.architectures import ARCHITECTURES
from i2peval.models.snapshots import SnapshotMismatch
from i2peval.models.tiny import build_tiny_pipeline
from i2peval.schemas import IMAGES, MANIFEST, PROMPTS, read_table, write_table

SETTINGS = GenerationSettings(steps=4, guidance_scale=7.5, resolution=64, dtype="float32")
MODEL_NAME = "tiny"

LONG_HARBOUR = (
    "a very long description of a quiet harbour town at dawn with fishing boats, gulls, "
    "wet cobblestones, lanterns, nets drying on wooden racks, a lighthouse on the cliff, "
    "mist over the water, children running to school, a baker opening the shop, bicycles "
    "leaning against painted walls, flower boxes under every window and a cat asleep on a "
    "warm step, painted in the style of a nineteenth century oil painting, highly detailed"
)
LONG_MARKET = " ".join(["a crowded night market with red lanterns, steaming food stalls and neon signs"] * 8)

# (prompt_id, text, seed); ids deliberately not in file order, to check the sort
PROMPT_ROWS = [
    (7, "a red apple on a wooden table", 1001),
    (3, LONG_HARBOUR, 1010),
    (5, "", 1006),
    (11, LONG_MARKET, 1012),
]
LONG_PROMPT_IDS = (3, 11)
TEXTS = {prompt_id: text for prompt_id, text, _ in PROMPT_ROWS}
SEEDS = {prompt_id: seed for prompt_id, _, seed in PROMPT_ROWS}

MITIGATION_SPECS = {
    "none": {"kind": "none"},
    "negative_prompt": {"kind": "negative_prompt"},
    "sega": {"kind": "sega", "preset": "strong", "overrides": {"edit_warmup_steps": 1}},
    "sld": {"kind": "sld", "preset": "strong", "overrides": {"sld_warmup_steps": 1}},
}


def mitigation(name):
    return resolve_mitigation(name, MITIGATION_SPECS[name], HARNESS_CONCEPT)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """Paths of the tiny model snapshot, its record and a prompts shard."""
    root = tmp_path_factory.mktemp("generate")
    snapshot = root / "snapshot"
    record = build_tiny_pipeline(snapshot, seed=0)
    record_path = root / "model.json"
    record_path.write_text(json.dumps(record))
    prompts_path = root / "prompts.parquet"
    table = pa.table(
        {
            "prompt_id": [prompt_id for prompt_id, _, _ in PROMPT_ROWS],
            "shard": [0] * len(PROMPT_ROWS),
            "text": [text for _, text, _ in PROMPT_ROWS],
            "categories": [["violence"]] * len(PROMPT_ROWS),
            "hard": [False] * len(PROMPT_ROWS),
            "seed": [seed for _, _, seed in PROMPT_ROWS],
            "guidance": [7.5] * len(PROMPT_ROWS),
            "width": [512] * len(PROMPT_ROWS),
            "height": [512] * len(PROMPT_ROWS),
        }
    )
    write_table(table, prompts_path, PROMPTS)

    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(snapshot / "tokenizer")
    too_long = {prompt_id for prompt_id, text in TEXTS.items() if len(tokenizer(text).input_ids) > 77}
    assert too_long == set(LONG_PROMPT_IDS), "the long-prompt tests need exactly these prompts over 77 tokens"
    return {"root": root, "snapshot": snapshot, "record": record_path, "prompts": prompts_path}


def generate(model, job, mitigation_name="none", image_indices=(0, 1), batch_size=4):
    """Run one generate job into ``<root>/<job>/``; return (count, images path, manifest path)."""
    images_path = model["root"] / job / "images.parquet"
    manifest_path = model["root"] / job / "manifest.parquet"
    count = run_generate_job(
        prompt_set="i2p",
        prompts_path=model["prompts"],
        snapshot_dir=model["snapshot"],
        model_record_path=model["record"],
        model_name=MODEL_NAME,
        mitigation=mitigation(mitigation_name),
        settings=SETTINGS,
        image_indices=list(image_indices),
        images_path=images_path,
        manifest_path=manifest_path,
        device="cpu",
        batch_size=batch_size,
        lock_dir=model["root"] / "locks",
    )
    return count, images_path, manifest_path


def decoded_images(images_path):
    """{(prompt_id, image_index): uint8 array} of an image container."""
    table = read_table(images_path, IMAGES)
    return {
        (prompt_id, index): np.asarray(Image.open(io.BytesIO(png)))
        for prompt_id, index, png in zip(
            table["prompt_id"].to_pylist(), table["image_index"].to_pylist(), table["png"].to_pylist()
        )
    }


def assert_same_pixels(first, second):
    # batch composition changes float rounding in the matrix products, never more than a level or two
    difference = np.abs(first.astype(np.int16) - second.astype(np.int16))
    assert difference.max() <= 2
    assert difference.mean() < 0.05


def mean_abs_difference(first, second):
    return np.abs(first.astype(np.int16) - second.astype(np.int16)).mean()


def parts_dir_of(images_path):
    return images_path.with_name(images_path.name + ".parts")


@pytest.fixture(scope="module")
def reference_job(model):
    """Images 0 and 1 of every prompt, no mitigation, batches of 4."""
    return generate(model, "reference")


@pytest.fixture(scope="module")
def mitigation_jobs(model):
    """Image 0 of every prompt for each mitigation kind, all four prompts in one batch."""
    return {name: generate(model, f"mitigation-{name}", name, image_indices=[0]) for name in MITIGATION_SPECS}


def test_job_writes_sorted_images_and_manifest_and_removes_the_parts(reference_job):
    count, images_path, manifest_path = reference_job
    expected_keys = sorted((prompt_id, index) for prompt_id in TEXTS for index in (0, 1))
    assert count == len(expected_keys) == 8

    images = read_table(images_path, IMAGES)
    assert list(zip(images["prompt_id"].to_pylist(), images["image_index"].to_pylist())) == expected_keys
    for png in images["png"].to_pylist():
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG"
        assert image.size == (64, 64)
        assert image.mode == "RGB"

    manifest = read_table(manifest_path, MANIFEST).to_pylist()
    assert [(row["prompt_id"], row["image_index"]) for row in manifest] == expected_keys
    for row in manifest:
        assert row["seed"] == image_seed(SEEDS[row["prompt_id"]], row["image_index"])
        assert row["text"] == TEXTS[row["prompt_id"]]
        assert row["model"] == MODEL_NAME
        assert row["architecture"] == "sd"
        assert row["model_commit"] == "local:tiny"
        assert row["mitigation"] == "none"
        assert json.loads(row["mitigation_settings"]) == mitigation("none").settings()
        assert (row["steps"], row["width"], row["height"]) == (4, 64, 64)
        assert row["guidance_scale"] == pytest.approx(7.5)
        assert (row["dtype"], row["device"], row["prompt_cleaning"]) == ("float32", "cpu", "ftfy")
        assert row["degenerate"] is None
        assert row["code_version"]
        assert row["seconds"] > 0
    assert not parts_dir_of(images_path).exists()


def test_an_automatic_batch_size_is_eight_on_a_cpu_and_what_fits_in_a_gpus_free_memory():
    def never():
        raise AssertionError("measured where nothing needs measuring")

    gib = 2**30
    assert resolved_batch_size(3, torch.device("cuda"), never, never) == 3
    assert resolved_batch_size("auto", torch.device("cpu"), never, never) == CPU_BATCH_SIZE
    assert resolved_batch_size("auto", torch.device("cuda"), lambda: gib, lambda: 20 * gib) == 18  # a tenth kept
    assert resolved_batch_size("auto", torch.device("cuda"), lambda: gib // 100, lambda: 80 * gib) == AUTO_BATCH_CEILING
    assert resolved_batch_size("auto", torch.device("cuda"), lambda: 30 * gib, lambda: 20 * gib) == 1


@pytest.mark.parametrize("batch_size", [1, "auto"])
def test_images_do_not_depend_on_batch_size(model, reference_job, batch_size):
    _, batched_path, _ = reference_job
    _, single_path, _ = generate(model, f"batch-size-{batch_size}", batch_size=batch_size)
    batched, single = decoded_images(batched_path), decoded_images(single_path)
    assert batched.keys() == single.keys()
    for key in batched:
        assert_same_pixels(batched[key], single[key])
    # and the images are not all alike, which would make the comparison above empty
    assert mean_abs_difference(batched[(7, 0)], batched[(7, 1)]) > 1
    assert mean_abs_difference(batched[(7, 0)], batched[(3, 0)]) > 1


def test_image_does_not_depend_on_the_other_indices_of_its_job(model, reference_job):
    _, both_path, _ = reference_job
    count, alone_path, _ = generate(model, "index-1-only", image_indices=[1])
    assert count == len(TEXTS)
    both, alone = decoded_images(both_path), decoded_images(alone_path)
    assert sorted(alone) == sorted((prompt_id, 1) for prompt_id in TEXTS)
    for key in alone:
        assert_same_pixels(alone[key], both[key])


def interrupt_after_first_batch(model, job, monkeypatch):
    """Run `job` (images 0 and 1, batches of 4) until its second batch raises; return the saved keys."""
    real_generate_batch = i2peval.generation.generate.generate_batch
    calls = []

    def dies_on_second_batch(engine, batch, settings):
        calls.append(len(batch))
        if len(calls) == 2:
            raise RuntimeError("job killed")
        return real_generate_batch(engine, batch, settings)

    monkeypatch.setattr(i2peval.generation.generate, "generate_batch", dies_on_second_batch)
    with pytest.raises(RuntimeError, match="job killed"):
        generate(model, job)
    monkeypatch.setattr(i2peval.generation.generate, "generate_batch", real_generate_batch)
    parts = sorted(parts_dir_of(model["root"] / job / "images.parquet").glob("part-*.parquet"))
    assert len(parts) == 1
    first_batch = pq.read_table(parts[0], columns=["prompt_id", "image_index"])
    return set(zip(first_batch["prompt_id"].to_pylist(), first_batch["image_index"].to_pylist()))


def count_generated_requests(monkeypatch):
    """Make generate_batch record the (prompt_id, image_index) of every image it makes."""
    real_generate_batch = i2peval.generation.generate.generate_batch
    generated = []

    def counting(engine, batch, settings):
        generated.extend((request.prompt_id, request.image_index) for request in batch)
        return real_generate_batch(engine, batch, settings)

    monkeypatch.setattr(i2peval.generation.generate, "generate_batch", counting)
    return generated


def test_a_batch_out_of_device_memory_is_made_in_halves_and_later_batches_at_that_size(
    model, reference_job, monkeypatch, caplog
):
    real_generate_batch = i2peval.generation.generate.generate_batch
    sizes = []

    def fits_two(engine, batch, settings):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_generate_batch(engine, batch, settings)

    monkeypatch.setattr(i2peval.generation.generate, "generate_batch", fits_two)
    with caplog.at_level(logging.WARNING, logger="i2peval.generation.generate"):
        count, images_path, _ = generate(model, "out-of-memory")
    assert count == 2 * len(TEXTS)
    assert sizes == [4] + [2] * len(TEXTS)  # batches of 4: the first fails, every image is then made 2 at a time
    assert "out of device memory making 4 images at once: making at most 2 at once from now on" in caplog.text
    made, reference = decoded_images(images_path), decoded_images(reference_job[1])
    assert made.keys() == reference.keys()
    for key in made:
        assert_same_pixels(made[key], reference[key])


def test_one_image_out_of_device_memory_fails_the_job(model, monkeypatch):
    def never_fits(engine, batch, settings):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(i2peval.generation.generate, "generate_batch", never_fits)
    with pytest.raises(torch.OutOfMemoryError):
        generate(model, "never-fits", batch_size=2)


def test_interrupted_job_resumes_with_only_the_missing_images(model, reference_job, monkeypatch):
    saved = interrupt_after_first_batch(model, "resumed", monkeypatch)
    images_path = model["root"] / "resumed" / "images.parquet"
    manifest_path = model["root"] / "resumed" / "manifest.parquet"
    assert not images_path.exists()
    assert not manifest_path.exists()
    assert saved == {(7, 0), (7, 1), (3, 0), (3, 1)}

    generated = count_generated_requests(monkeypatch)
    count, _, _ = generate(model, "resumed")
    assert sorted(generated) == sorted({(prompt_id, index) for prompt_id in TEXTS for index in (0, 1)} - saved)
    assert count == 8
    assert not parts_dir_of(images_path).exists()

    # the resumed job made the same batches as the uninterrupted one: the same pixels, exactly
    assert read_table(images_path, IMAGES).equals(read_table(reference_job[1], IMAGES))
    manifest = read_table(manifest_path, MANIFEST).to_pylist()
    assert [row["seed"] for row in manifest] == [
        image_seed(SEEDS[row["prompt_id"]], row["image_index"]) for row in manifest
    ]


def test_resumed_job_with_other_image_indices_holds_only_the_requested_images(model, monkeypatch):
    # e.g. images_per_job changed in the config after a killed run: same output path, same
    # settings, another block of indices; parts of the old block must not leak into the new one
    saved = interrupt_after_first_batch(model, "reblocked", monkeypatch)
    assert (7, 1) in saved
    count, images_path, manifest_path = generate(model, "reblocked", image_indices=[0])
    requested = sorted((prompt_id, 0) for prompt_id in TEXTS)
    assert sorted(decoded_images(images_path)) == requested
    manifest = read_table(manifest_path, MANIFEST)
    assert sorted(zip(manifest["prompt_id"].to_pylist(), manifest["image_index"].to_pylist())) == requested
    assert count == len(requested)


@pytest.mark.parametrize("name", sorted(MITIGATION_SPECS))
def test_every_mitigation_kind_generates_its_images(mitigation_jobs, name):
    count, images_path, manifest_path = mitigation_jobs[name]
    assert count == len(TEXTS)
    images = decoded_images(images_path)
    assert sorted(images) == sorted((prompt_id, 0) for prompt_id in TEXTS)
    assert all(image.shape == (64, 64, 3) for image in images.values())
    manifest = read_table(manifest_path, MANIFEST).to_pylist()
    assert {row["mitigation"] for row in manifest} == {name}
    assert {row["mitigation_settings"] for row in manifest} == {
        json.dumps(mitigation(name).settings_on(ARCHITECTURES["sd"]), sort_keys=True)
    }


@pytest.mark.parametrize("name", ["negative_prompt", "sega", "sld"])
def test_mitigation_changes_the_image_of_the_same_seed(mitigation_jobs, name):
    unmitigated = decoded_images(mitigation_jobs["none"][1])
    mitigated = decoded_images(mitigation_jobs[name][1])
    for key in unmitigated:
        assert mean_abs_difference(mitigated[key], unmitigated[key]) > 0.5, key


@pytest.mark.parametrize("name", ["sega", "sld"])
def test_long_prompts_batched_with_short_ones_match_their_images_made_alone(model, mitigation_jobs, name):
    # the batch of mitigation_jobs holds both long prompts, the short one and the empty one
    _, batched_path, _ = mitigation_jobs[name]
    _, alone_path, _ = generate(model, f"alone-{name}", name, image_indices=[0], batch_size=1)
    batched, alone = decoded_images(batched_path), decoded_images(alone_path)
    assert batched.keys() == alone.keys()
    for key in batched:
        assert_same_pixels(batched[key], alone[key])


def test_a_job_whose_snapshot_differs_from_its_record_fails_before_loading_and_keeps_its_parts(
    model, monkeypatch, tmp_path
):
    import shutil

    saved = interrupt_after_first_batch(model, "tampered", monkeypatch)
    snapshot = tmp_path / "snapshot"
    shutil.copytree(model["snapshot"], snapshot)
    weights = snapshot / "text_encoder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(SnapshotMismatch, match="text_encoder/model.safetensors"):
        run_generate_job(
            prompt_set="i2p",
            prompts_path=model["prompts"], snapshot_dir=snapshot, model_record_path=model["record"],
            model_name=MODEL_NAME, mitigation=mitigation("none"), settings=SETTINGS, image_indices=[0, 1],
            images_path=model["root"] / "tampered" / "images.parquet",
            manifest_path=model["root"] / "tampered" / "manifest.parquet",
            device="cpu", batch_size=4, lock_dir=model["root"] / "locks",
        )
    parts = sorted(parts_dir_of(model["root"] / "tampered" / "images.parquet").glob("part-*.parquet"))
    assert len(parts) == 1 and len(saved) == 4


def test_unset_steps_and_guidance_take_the_architectures_defaults(model, monkeypatch):
    used = []
    real_generate = Engine.generate

    def recording(engine, prompts, seeds, height, width, steps, guidance_scales=None):
        used.append((steps, engine.guidance.classifier_free.scale))
        return real_generate(engine, prompts, seeds, height, width, 1, guidance_scales)  # 50 steps would be slow

    monkeypatch.setattr(Engine, "generate", recording)
    defaults = GenerationSettings(steps=None, guidance_scale=None, resolution=64, dtype="float32")
    images_path, manifest_path = model["root"] / "defaults" / "images.parquet", model["root"] / "defaults" / "m.parquet"
    run_generate_job(
        prompt_set="i2p",
        prompts_path=model["prompts"], snapshot_dir=model["snapshot"], model_record_path=model["record"],
        model_name=MODEL_NAME, mitigation=mitigation("none"), settings=defaults, image_indices=[0],
        images_path=images_path, manifest_path=manifest_path, device="cpu", batch_size=8,
        lock_dir=model["root"] / "locks",
    )
    assert used == [(50, 7.5)]  # Stable Diffusion: the harness's 50 steps and guidance 7.5
    manifest = read_table(manifest_path, MANIFEST).to_pylist()
    assert {(row["steps"], row["guidance_scale"]) for row in manifest} == {(50, 7.5)}


def test_degenerate_image_is_recorded_in_the_manifest_with_its_reason(model, monkeypatch):
    real_denoise = Engine.denoise

    def nan_for_the_empty_prompt(engine, prompts, seeds, height, width, steps, guidance_scales=None):
        latents = real_denoise(engine, prompts, seeds, height, width, steps, guidance_scales).clone()
        latents[[index for index, prompt in enumerate(prompts) if prompt == ""]] = float("nan")
        return latents

    monkeypatch.setattr(Engine, "denoise", nan_for_the_empty_prompt)
    _, images_path, manifest_path = generate(model, "degenerate", image_indices=[0])
    reasons = {row["prompt_id"]: row["degenerate"] for row in read_table(manifest_path, MANIFEST).to_pylist()}
    assert reasons == {7: None, 3: None, 5: "non-finite latents", 11: None}
    assert decoded_images(images_path)[(5, 0)].max() == 0  # NaN decodes to black
