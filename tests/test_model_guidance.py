"""A model's ``guidance``: every image guided by its prompt's own scale (as the erasure papers'
scripts guide Stable Diffusion by the ESD copy's evaluation_guidance), or by the model's; unset,
the harness's rule per architecture. Recorded in manifests and checked at aggregation, refused
at planning on a prompt set without a guidance column, named in the report."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import yaml

from i2peval.config import validate_config
from i2peval.generation.generate import GenerationSettings, run_generate_job
from i2peval.generation.mitigations import HARNESS_CONCEPT, KINDS, resolve_mitigation, settings_on
from i2peval.metrics.manifests import ImageSettings, StaleImages, check_manifests, read_manifests
from i2peval.models.architectures import ARCHITECTURES
from i2peval.models.tiny import build_tiny_pipeline
from i2peval.plan import PlanError
from i2peval.report.published import published_keys
from i2peval.schemas import IMAGES, MANIFEST, PROMPTS, read_table, write_table
from i2peval.study import Study

DEMO = yaml.safe_load((Path(__file__).parent.parent / "demo" / "config.yaml").read_text())
SETTINGS = {"kind": "sega", "preset": "strong", "concept": HARNESS_CONCEPT, "parameters": {}, "long_prompts": "cut"}


@pytest.mark.parametrize(
    "architecture, guidance, guided_kinds",
    [("sd", None, ()), ("alt", None, ("sega",)), ("if", None, KINDS), ("sd", "from_prompt", KINDS),
     ("if", "model", ()), ("alt", "model", ())],
)  # fmt: skip
def test_a_models_guidance_overrides_the_harness_rule_for_every_kind(architecture, guidance, guided_kinds):
    for kind in KINDS:
        made_with = settings_on({**SETTINGS, "kind": kind}, ARCHITECTURES[architecture], guidance)
        assert (made_with.get("guidance") == "from_prompt") == (kind in guided_kinds), kind
    with pytest.raises(ValueError, match="model guidance 'prompt' is not one of"):
        settings_on(SETTINGS, ARCHITECTURES["sd"], "prompt")


def generate(tmp_path, name, guidance):
    snapshot = tmp_path / "snapshot"
    if not snapshot.exists():
        (tmp_path / "model.json").write_text(json.dumps(build_tiny_pipeline(snapshot, seed=1)))
        rows = {"prompt_id": [0, 1], "shard": [0, 0], "text": ["a red apple", "a storm at sea"],
                "categories": [["violence"]] * 2, "hard": [False] * 2, "seed": [7, 8], "guidance": [3.0, 11.0],
                "width": [512] * 2, "height": [512] * 2}  # fmt: skip
        write_table(pa.table(rows), tmp_path / "prompts.parquet", PROMPTS)
    settings = GenerationSettings(steps=3, guidance_scale=7.5, resolution=64, dtype="float32", guidance=guidance)
    run_generate_job(
        prompt_set="i2p",
        prompts_path=tmp_path / "prompts.parquet", snapshot_dir=snapshot, model_record_path=tmp_path / "model.json",
        model_name="tiny", mitigation=resolve_mitigation("none", {"kind": "none"}, HARNESS_CONCEPT),
        settings=settings, image_indices=[0], images_path=tmp_path / f"{name}.images.parquet",
        manifest_path=tmp_path / f"{name}.manifest.parquet", device="cpu", lock_dir=tmp_path / "locks",
    )  # fmt: skip
    return settings


def test_a_stable_diffusion_job_guided_from_the_prompts_records_and_checks_each_scale(tmp_path):
    settings = generate(tmp_path, "prompt", "from_prompt")
    generate(tmp_path, "model", None)
    manifest = pl.from_arrow(read_table(tmp_path / "prompt.manifest.parquet", MANIFEST)).sort("prompt_id")
    assert manifest["guidance_scale"].to_list() == [3.0, 11.0]
    assert json.loads(manifest["mitigation_settings"][0])["guidance"] == "from_prompt"
    by_prompt, by_model = (read_table(tmp_path / f"{name}.images.parquet", IMAGES) for name in ("prompt", "model"))
    assert by_prompt["png"].to_pylist() != by_model["png"].to_pylist()

    generation = {key: getattr(settings, key) for key in ("steps", "guidance_scale", "resolution", "dtype")}
    made_with = ImageSettings(
        prompt_set="i2p", models={"tiny": {**generation, "prompt_cleaning": "ftfy", "guidance": "from_prompt"}},
        mitigations={"none": resolve_mitigation("none", {"kind": "none"}, HARNESS_CONCEPT).settings()},
    )  # fmt: skip
    keep = ["model_commit", "seed", "text", "guidance_scale", "guidance_from_prompt"]
    manifests = read_manifests([tmp_path / "prompt.manifest.parquet"], made_with, keep)
    prompts = pl.from_arrow(read_table(tmp_path / "prompts.parquet", PROMPTS))
    records = {"tiny": (tmp_path / "model.json", json.loads((tmp_path / "model.json").read_text()))}
    check_manifests(manifests, prompts, records)
    with pytest.raises(StaleImages, match="images of prompt 1 were guided by its scale 11.0"):
        check_manifests(manifests, prompts.with_columns(guidance=pl.Series([3.0, 5.0], dtype=pl.Float32)), records)
    assert np.array_equal(manifests.sort("prompt_id")["guidance_from_prompt"].to_numpy(), [True, True])


def demo_config(**model_settings):
    config = copy.deepcopy(DEMO)
    config["models"]["tiny-a"] |= model_settings
    return config


def test_a_model_guided_from_prompts_is_refused_on_a_set_without_a_guidance_column():
    config = demo_config(guidance="from_prompt")
    config["prompt_sets"]["violence"] = {"source": "ring-a-bell-violence", "shards": 1}
    config = validate_config(config)
    with pytest.raises(PlanError, match=r"models 'tiny-a' take each prompt's guidance scale \(guidance: from_prompt\), "
                                        r"but prompt set 'violence' has no guidance column"):  # fmt: skip
        Study.from_config(config, prompt_set="violence")
    config["prompt_sets"]["violence"]["models"] = ["tiny-erased"]
    assert Study.from_config(config, prompt_set="violence").models.keys() == {"tiny-erased"}


def test_a_models_guidance_is_a_param_named_in_the_report_and_matches_no_published_number():
    study = Study.from_config(validate_config(demo_config(guidance="from_prompt", published_as="SD 1.4")))
    assert study.generation_params("tiny-a")["guidance"] == "from_prompt"
    assert "guidance" not in study.generation_params("tiny-erased")
    keys = published_keys(study)
    assert keys.models["tiny-a"] is None
    reason = "its guidance: from_prompt guides images by another scale than the harness did"
    assert keys.model_reasons["tiny-a"] == reason
    assert published_keys(study, {"tiny-a": "if"}).models["tiny-a"] == "SD 1.4"  # the harness's rule on IF
    notes = study.models["tiny-a"].harness_differences("sd")
    assert any("every image is guided by its prompt's own scale" in note for note in notes)


@pytest.mark.parametrize("architecture, published", [("sd", "SD 1.4"), ("alt", None), ("if", None), (None, "SD 1.4")])
def test_guidance_by_the_models_scale_matches_published_numbers_where_the_harness_guided_so(architecture, published):
    study = Study.from_config(validate_config(demo_config(guidance="model", published_as="SD 1.4")))
    assert published_keys(study, {"tiny-a": architecture} if architecture else {}).models["tiny-a"] == published
