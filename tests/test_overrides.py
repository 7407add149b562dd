"""Concept-erased weights on a base model: a UNet state dict, whole (torch.save of a
diffusers UNet state dict, as ESD's old release, RECE, SalUn and FMN publish them) or
partial (the cross-attention projections as safetensors, as UCE and ESD's new code),
fetched, verified, checked against the base, recorded, and loaded by the generate jobs."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml
from fakes import FolderHub
from safetensors.torch import load_file, save_file
from test_custom_terms import readme_example
from workflow_runs import DEMO_CONFIG, REPO, copy_run, planned_jobs, snakemake, write_config

from i2peval.config import ConfigError, validate_config
from i2peval.generation.engine import Engine
from i2peval.generation.latent_models import load_latent_model
from i2peval.generation.mitigations import HARNESS_CONCEPT, resolve_mitigation
from i2peval.hub import ChecksumError, sha256_of
from i2peval.models.overrides import (
    COMPONENTS,
    UNET_WEIGHTS,
    OverrideError,
    demo_text_encoder,
    fetch_override,
    read_state_dict,
)
from i2peval.models.spec import obtain_model
from i2peval.report.published import matching_notes, published_keys
from i2peval.study import Study

BASE = {"source": "tiny", "architecture": "sd", "seed": 0, "scheduler": "pndm"}


def moved(tensors: dict[str, torch.Tensor], keep=lambda key: True) -> dict[str, torch.Tensor]:
    """The tensors `keep` picks, each replaced by seeded noise of twice its own scale: other weights."""
    generator = torch.Generator().manual_seed(0)
    return {
        key: (torch.randn(value.shape, generator=generator) * 2 * value.std()).contiguous()
        for key, value in sorted(tensors.items()) if keep(key)
    }


def cross_attention(key: str) -> bool:
    return "attn2.to_k." in key or "attn2.to_v." in key


@pytest.fixture(scope="module")
def base_unet(tiny_sd_snapshot) -> dict[str, torch.Tensor]:
    return load_file(tiny_sd_snapshot / UNET_WEIGHTS)


def images_of(snapshot: Path, record: dict) -> np.ndarray:
    model = load_latent_model(snapshot, torch.float32, torch.device("cpu"), record)
    engine = Engine.for_mitigation(model, resolve_mitigation("none", {"kind": "none"}, HARNESS_CONCEPT), 7.5)
    made = engine.generate(["a red apple on a wooden table"], [3], 32, 32, 4)
    return np.stack([np.asarray(image.image) for image in made]).astype(int)


@pytest.mark.parametrize("shape", ["whole .pt", "partial .safetensors"])
def test_an_override_loads_is_recorded_and_changes_the_images(base_unet, tiny_sd_snapshot, tmp_path, shape):
    os.chdir(tmp_path)
    if shape == "whole .pt":
        torch.save(moved(base_unet), tmp_path / "esd.pt")
        spec = {"path": "esd.pt", "sha256": sha256_of(tmp_path / "esd.pt")}
    else:
        save_file(moved(base_unet, cross_attention), tmp_path / "uce.safetensors")
        spec = {"path": "uce.safetensors", "sha256": sha256_of(tmp_path / "uce.safetensors")}
    snapshot = tmp_path / "model" / "snapshot"
    record = obtain_model({**BASE, "unet": spec}, snapshot)
    override = record["unet_override"]
    assert override["source"] == "file" and override["sha256"] == spec["sha256"]
    assert record["files"][override["file"]] == spec["sha256"]
    if shape == "whole .pt":
        assert override["whole"] and override["tensors"] == len(base_unet) and override["parameter_share"] == 1.0
    else:
        assert not override["whole"] and override["tensors"] == sum(map(cross_attention, base_unet))
        assert 0 < override["parameter_share"] < 0.2
    plain = obtain_model(BASE, tmp_path / "plain" / "snapshot")
    assert "unet_override" not in plain
    assert np.abs(images_of(snapshot, record) - images_of(tmp_path / "plain" / "snapshot", plain)).max() > 0

    model = load_latent_model(snapshot, torch.float32, torch.device("cpu"), record)
    loaded = model.denoiser.state_dict()
    expected = read_state_dict(snapshot / override["file"])
    assert all(torch.equal(loaded[key], value) for key, value in expected.items())
    untouched = [key for key in base_unet if key not in expected]
    assert all(torch.equal(loaded[key], base_unet[key]) for key in untouched)


def test_a_file_made_for_another_base_fails_naming_the_key(tiny_sdxl_snapshot, tmp_path):
    os.chdir(tmp_path)
    save_file(moved(load_file(tiny_sdxl_snapshot / UNET_WEIGHTS), cross_attention), tmp_path / "xl.safetensors")
    spec = {"path": "xl.safetensors", "sha256": sha256_of(tmp_path / "xl.safetensors")}
    with pytest.raises(OverrideError, match=r"key '[\w.]+attn2\.to_[kv]\.weight' (is not a parameter|has shape)"):
        obtain_model({**BASE, "unet": spec}, tmp_path / "model" / "snapshot")
    save_file({"not.a.unet.key": torch.zeros(2)}, tmp_path / "other.safetensors")
    spec = {"path": "other.safetensors", "sha256": sha256_of(tmp_path / "other.safetensors")}
    with pytest.raises(OverrideError, match="key 'not.a.unet.key' is not a parameter of the base model's UNet"):
        obtain_model({**BASE, "unet": spec}, tmp_path / "again" / "snapshot")


def fetch_unet(spec, snapshot, client=None):
    return fetch_override(COMPONENTS["unet"], spec, snapshot, client)


def test_an_erased_text_encoder_published_as_advunlearn_does_loads_from_a_hub_folder(tiny_sd_snapshot, tmp_path):
    """AdvUnlearn publishes CLIPTextModel folders (config.json and pytorch_model.bin, key
    names with "text_model." and the position_ids buffer of older transformers) in
    subfolders of one hub repository."""
    os.chdir(tmp_path)
    snapshot = tmp_path / "model" / "snapshot"
    plain = obtain_model(BASE, snapshot)
    folder = tmp_path / "hub" / "nudity_unlearned"
    folder.mkdir(parents=True)
    shutil.copyfile(snapshot / "text_encoder" / "config.json", folder / "config.json")
    demo_text_encoder(snapshot / COMPONENTS["text_encoder"].weights, 3, folder / "pytorch_model.bin")
    published = torch.load(folder / "pytorch_model.bin", weights_only=True)
    assert all(key.startswith("text_model.") for key in published) and "text_model.embeddings.position_ids" in published

    spec = {"repo_id": "OPTML-Group/AdvUnlearn", "subfolder": "nudity_unlearned", "revision": "main"}
    override = fetch_override(COMPONENTS["text_encoder"], spec, snapshot, FolderHub(tmp_path / "hub"))
    assert override["filename"] == "nudity_unlearned/pytorch_model.bin"
    assert override["file"] == "overrides/text_encoder.bin" and override["skipped"] == ["embeddings.position_ids"]
    assert override["whole"] and override["parameter_share"] == 1.0
    assert override["tensors"] == len(published) - 1 and override["sha256"] == sha256_of(folder / "pytorch_model.bin")
    record = {**plain, "text_encoder_override": override}
    assert np.abs(images_of(snapshot, record) - images_of(snapshot, plain)).max() > 0
    loaded = load_latent_model(snapshot, torch.float32, torch.device("cpu"), record).text_encoders[0].state_dict()
    assert all(torch.equal(loaded[key.removeprefix("text_model.")], value)
               for key, value in published.items() if "position_ids" not in key)

    (folder / "pytorch_model.bin").rename(folder / "weights.bin")
    with pytest.raises(OverrideError, match="holds none of model.safetensors, pytorch_model.bin .it holds: "
                       "nudity_unlearned/config.json, nudity_unlearned/weights.bin"):
        fetch_override(COMPONENTS["text_encoder"], spec, snapshot, FolderHub(tmp_path / "hub"))


def test_a_text_encoder_for_another_base_fails_naming_the_key(tiny_sdxl_snapshot, tmp_path):
    os.chdir(tmp_path)
    save_file(load_file(tiny_sdxl_snapshot / "text_encoder_2" / "model.safetensors"), tmp_path / "te2.safetensors")
    spec = {"path": "te2.safetensors", "sha256": sha256_of(tmp_path / "te2.safetensors")}
    mismatch = r"key '[\w.]+' (is not a parameter of the base model's text encoder|has shape)"
    with pytest.raises(OverrideError, match=mismatch):
        obtain_model({**BASE, "text_encoder": spec}, tmp_path / "model" / "snapshot")


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    os.chdir(tmp_path)
    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"conv_in.weight": RunsCode()}, handle)
    with pytest.raises(OverrideError, match="refused: not plain weights"):
        read_state_dict(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned.txt").exists()
    torch.save({"state_dict": {"a": torch.ones(2)}}, tmp_path / "wrapped.ckpt")
    assert list(read_state_dict(tmp_path / "wrapped.ckpt")) == ["a"]
    torch.save({"a": torch.ones(2), "step": 3}, tmp_path / "mixed.pt")
    with pytest.raises(OverrideError, match="'step' is not a tensor"):
        read_state_dict(tmp_path / "mixed.pt")


def test_downloads_are_verified(base_unet, tmp_path):
    os.chdir(tmp_path)
    weights = tmp_path / "uce.safetensors"
    save_file(moved(base_unet, cross_attention), weights)
    sha256 = sha256_of(weights)
    snapshot = tmp_path / "model" / "snapshot"
    obtain_model(BASE, snapshot)
    with pytest.raises(ChecksumError, match="the configuration says " + "0" * 64):
        fetch_unet({"url": weights.as_uri(), "sha256": "0" * 64}, snapshot)
    assert fetch_unet({"url": weights.as_uri(), "sha256": sha256}, snapshot)["source"] == "url"
    with pytest.raises(ChecksumError, match=f"sha256 {sha256}, the configuration says"):
        fetch_unet({"path": "uce.safetensors", "sha256": "1" * 64}, snapshot)

    hub = tmp_path / "hub"
    hub.mkdir()
    shutil.copyfile(weights, hub / "uce-i2p.safetensors")
    spec = {"repo_id": "org/uce", "filename": "uce-i2p.safetensors", "revision": "main"}
    record = fetch_unet(spec, snapshot, FolderHub(tmp_path / "hub"))
    assert record["source"] == "hub" and re.fullmatch(r"[0-9a-f]{40}", record["commit"])
    assert record["sha256"] == sha256 and not (snapshot / "overrides" / "download").exists()
    with pytest.raises(ChecksumError):
        fetch_unet(spec, snapshot, FolderHub(tmp_path / "hub", corrupt=frozenset({"uce-i2p.safetensors"})))


def test_the_configuration_names_one_source_and_a_missing_local_file_stops_the_plan(tmp_path):
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["models"]["tiny-a"]["unet"] = {"path": "esd.pt"}
    with pytest.raises(ConfigError, match="models.tiny-a"):
        validate_config(config)
    for mixed in ({"repo_id": "org/x", "url": "https://example.org/x.pt", "sha256": "a" * 64},
                  {"demo": {"seed": 1}, "path": "esd.pt"}, {"path": "esd.zip", "sha256": "a" * 64}):
        config["models"]["tiny-a"]["unet"] = mixed
        with pytest.raises(ConfigError, match="models.tiny-a.unet"):
            validate_config(config)
    config["models"]["tiny-a"]["unet"] = {"path": "esd.pt", "sha256": "a" * 64}
    config["models"]["tiny-a"]["published_as"] = "SD 1.4"
    study = Study.from_config(validate_config(config), tmp_path)
    keys = published_keys(study)
    assert keys.models["tiny-a"] is None
    assert "Model tiny-a is matched to no published model: its weights are replaced or adapted" in " ".join(
        matching_notes(keys)
    )
    with pytest.raises(OverrideError, match="model 'tiny-a': unet override esd.pt: no such file"):
        study.check_records(tmp_path)
    assert study.models["tiny-a"].snapshot_spec()["unet"] == {"path": "esd.pt", "sha256": "a" * 64}
    config["models"]["tiny-a"]["unet"] = {"sha256": "a" * 64, "path": "esd.pt"}
    reordered = Study.from_config(validate_config(config), tmp_path).models["tiny-a"].snapshot_spec()
    assert json.dumps(reordered) == json.dumps(study.models["tiny-a"].snapshot_spec())  # the same job params


ERASED = yaml.safe_load(DEMO_CONFIG.read_text())["models"]["tiny-erased"]


@pytest.mark.workflow
def test_an_erased_model_under_a_custom_term_runs_through_the_workflow_and_each_change_reruns_its_jobs(
    demo_run, tmp_path
):
    """Both of the user's own methods in one run (a run costs minutes): the demo's
    tiny-erased (a partial UNet, a whole text encoder and a LoRA on a tiny SD), whose
    images without mitigation the demo made, under the README's custom term."""
    run = copy_run(demo_run, tmp_path / "run")
    code, mitigations = readme_example()
    (run / "away_from_concept.py").write_text(code)
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["models"] = {"tiny-erased": ERASED}
    config["mitigations"] = {"none": config["mitigations"]["none"], **mitigations}
    config["prompt_sets"] = {"i2p": config["prompt_sets"]["i2p"]}
    configfile = write_config(tmp_path / "config.yaml", config)
    result = snakemake(run, configfile, "--cores", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ran = planned_jobs(result.stdout + result.stderr)
    jobs = sorted(
        (rule, wildcards["model"], wildcards["mitigation"]) for rule, wildcards in ran if "model" in wildcards
    )
    assert jobs == [("classify", "tiny-erased", "away-from-weapons"), ("generate", "tiny-erased", "away-from-weapons")]

    [record_path] = (run / "resources" / "models" / "tiny-erased").glob("*/model.json")
    record = json.loads(record_path.read_text())
    assert record["unet_override"]["source"] == "demo" and not record["unet_override"]["whole"]
    assert record["text_encoder_override"]["whole"] and record["text_encoder_override"]["file"].endswith(".bin")
    assert [lora["layers"] for lora in record["lora"]] == [{"text_encoder": 8, "unet": 32}]
    manifests = pl.read_parquet(run / "results" / "manifests" / "tiny-erased" / "*" / "*" / "*.parquet")
    assert manifests["model_commit"].unique().to_list() == [
        f"local:tiny+unet:{record['unet_override']['sha256']}+text_encoder:{record['text_encoder_override']['sha256']}"
        f"+lora:{record['lora'][0]['sha256']}*1.0"
    ]
    made_with = {row["mitigation"]: json.loads(row["mitigation_settings"]) for row in manifests.iter_rows(named=True)}
    assert made_with["away-from-weapons"]["term_sha256"] == sha256_of(run / "away_from_concept.py")
    pngs = [pl.read_parquet(run / "results" / "images" / "tiny-erased" / mitigation / "shard-0" / "block-0.parquet")
            .sort("prompt_id", "image_index")["png"].to_list() for mitigation in ("none", "away-from-weapons")]
    assert pngs[0] != pngs[1]
    report = (run / "results" / "report.html").read_text()
    deviations = report[report.index("Deviations from the paper"):report.index("<h3>Warnings</h3>")]
    made = "the demo&#39;s own weights made with"
    for override in (f"its UNet weights are replaced by an override ({made} seed 5)",
                     f"its text encoder weights are replaced by an override ({made} seed 3)",
                     f"a LoRA is fused into its weights at scale 1.0 ({made} rank 4, seed 1)"):
        assert f"Model tiny-erased: {override}." in deviations
    assert "Mitigation away-from-weapons: custom guidance term away_from_concept:AwayFromConcept" in deviations

    (run / "away_from_concept.py").write_text(code + "# a comment changes the file, and so its recorded sha256\n")
    plan = snakemake(run, configfile, "--dry-run")
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    image_jobs = [wildcards for rule, wildcards in planned_jobs(plan.stdout) if rule in ("generate", "classify")]
    assert image_jobs and {job["mitigation"] for job in image_jobs} == {"away-from-weapons"}

    (run / "away_from_concept.py").write_text(code)
    for key, changed in (("unet", {"demo": {"seed": 6}}), ("lora", [{"demo": {"seed": 1, "rank": 4}, "scale": 0.5}])):
        variant = {**config, "models": {"tiny-erased": {**ERASED, key: changed}}}
        plan = snakemake(run, write_config(tmp_path / f"changed-{key}.yaml", variant), "--dry-run")
        assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
        assert sorted(rule for rule, _ in planned_jobs(plan.stdout)) == [
            "aggregate", "all", "classify", "classify", "generate", "generate", "model", "report",
        ], key


def test_the_demo_override_is_deterministic(tmp_path):
    first = obtain_model({**BASE, "unet": {"demo": {"seed": 5}}}, tmp_path / "a" / "snapshot")
    second = obtain_model({**BASE, "unet": {"demo": {"seed": 5}}}, tmp_path / "b" / "snapshot")
    assert first["unet_override"]["sha256"] == second["unet_override"]["sha256"]
    digest = hashlib.sha256(json.dumps(first["files"], sort_keys=True).encode()).hexdigest()
    assert digest == hashlib.sha256(json.dumps(second["files"], sort_keys=True).encode()).hexdigest()


def uncommented_models(text: str) -> str:
    """config.yaml with its commented model blocks (AltDiffusion, DeepFloyd IF, SD 3.5, the erased models)
    uncommented, as a user would (a block runs from its model's name to the next comment
    that is not YAML), the UCE block's placeholders filled in."""
    lines, in_model = [], False
    for line in text.splitlines():
        if re.fullmatch(r"  # (sd-1\.4-[\w.-]+|altdiffusion-m9|deepfloyd-if|sd-3\.5-medium):", line):
            in_model = True
        elif line.startswith("  # ") and not line.startswith("  #   "):
            in_model = False
        lines.append("  " + line[4:] if in_model else line)
    return "\n".join(lines).replace("<file>", "uce-i2p").replace("<its sha256>", "a" * 64) + "\n"


def test_the_commented_models_in_config_yaml_plan_offline_once_uncommented(tmp_path):
    config_text = uncommented_models((REPO / "config.yaml").read_text())
    config = yaml.safe_load(config_text)
    erased = [name for name, model in config["models"].items() if "unet" in model or "text_encoder" in model]
    assert erased == ["sd-1.4-esd-u-nudity", "sd-1.4-rece-unsafe", "sd-1.4-uce-i2p", "sd-1.4-advunlearn-nudity"]
    assert config["models"]["altdiffusion-m9"]["repo_id"] == "BAAI/AltDiffusion-m9"
    assert config["models"]["sd-3.5-medium"]["repo_id"] == "stabilityai/stable-diffusion-3.5-medium"
    assert config["models"]["deepfloyd-if"]["cascade"]["stage_2"]["repo_id"] == "DeepFloyd/IF-II-L-v1.0"
    configfile = tmp_path / "config.yaml"
    configfile.write_text(config_text)
    result = snakemake(tmp_path / "run", configfile, "--dry-run", env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    planned = planned_jobs(result.stdout)
    for name in [*erased, "altdiffusion-m9", "deepfloyd-if", "sd-3.5-medium"]:
        assert sum(1 for rule, wildcards in planned if rule == "generate" and wildcards["model"] == name) == len(
            config["mitigations"]
        ) * sum(prompt_set["shards"] for prompt_set in config["prompt_sets"].values())
