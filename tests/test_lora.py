"""LoRA adapters on a base model: fetched, checked against the base from the file's
headers, recorded, loaded through diffusers' loaders, fused at their scales."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file, save_file
from test_overrides import BASE, images_of

from i2peval.hub import sha256_of
from i2peval.models.architectures import load_pipeline
from i2peval.models.lora import apply_loras, demo_lora
from i2peval.models.overrides import OverrideError
from i2peval.models.snapshots import model_commit_label
from i2peval.models.spec import obtain_model

DEMO = {"demo": {"seed": 1, "rank": 4}, "scale": 1.0}


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """(snapshot, record) of the tiny SD with the demo's LoRA, and (snapshot, record) without."""
    root = tmp_path_factory.mktemp("lora")
    return obtain_model({**BASE, "lora": [DEMO]}, root / "a" / "snapshot"), root / "a" / "snapshot"


def kohya_layout(diffusers_layout: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """A LoRA in diffusers' layout rewritten as Kohya's trainer writes SD 1.x LoRAs:
    lora_unet_/lora_te_ names with underscores, lora_down/lora_up, an alpha per layer."""
    tensors = {}
    for key, value in diffusers_layout.items():
        module, _, rest = key.partition(".")
        layer, _, matrix = rest.rpartition(".lora_")
        if module == "text_encoder" and not layer.startswith("text_model."):
            layer = "text_model." + layer
        name = {"unet": "lora_unet_", "text_encoder": "lora_te_"}[module] + layer.replace(".", "_")
        tensors[name + (".lora_down.weight" if matrix.startswith("A") else ".lora_up.weight")] = value
        tensors[name + ".alpha"] = torch.tensor(float(rank))
    return tensors


def fused(snapshot, loras) -> dict[str, dict[str, torch.Tensor]]:
    pipeline, _ = load_pipeline(snapshot, torch.float32)
    apply_loras(pipeline, snapshot, loras)
    return {module: getattr(pipeline, module).state_dict() for module in ("unet", "text_encoder")}


def test_a_lora_is_recorded_fused_at_its_scale_and_changes_the_images(adapted, tmp_path):
    record, snapshot = adapted
    [lora] = record["lora"]
    assert lora["source"] == "demo" and lora["file"] == "overrides/lora-0.safetensors" and lora["scale"] == 1.0
    assert lora["layers"] == {"text_encoder": 8, "unet": 32} and lora["ranks"] == [4] and lora["tensors"] == 80
    assert record["files"][lora["file"]] == lora["sha256"] == sha256_of(snapshot / lora["file"])
    assert model_commit_label(record) == f"local:tiny+lora:{lora['sha256']}*1.0"

    plain = {key: value for key, value in record.items() if key != "lora"}
    assert np.abs(images_of(snapshot, record) - images_of(snapshot, plain)).max() > 0
    base = fused(snapshot, [])
    full = fused(snapshot, [lora])
    half = fused(snapshot, [{**lora, "scale": 0.5}])
    none = fused(snapshot, [{**lora, "scale": 0.0}])
    for module in base:
        changed = [key for key in base[module] if not torch.equal(base[module][key], full[module][key])]
        assert len(changed) == lora["layers"][module]
        assert all(torch.equal(base[module][key], none[module][key]) for key in base[module])
        for key in changed:
            torch.testing.assert_close(half[module][key] - base[module][key],
                                       (full[module][key] - base[module][key]) / 2, rtol=1e-4, atol=1e-6)


def test_kohya_layout_fuses_to_the_same_weights(adapted):
    record, snapshot = adapted
    [lora] = record["lora"]
    kohya = snapshot / "overrides" / "kohya.safetensors"
    save_file(kohya_layout(load_file(snapshot / lora["file"]), rank=4), kohya)
    spec = {"path": str(kohya), "sha256": sha256_of(kohya), "scale": 1.0}
    other = obtain_model({**BASE, "lora": [spec]}, kohya.parent.parent.parent / "kohya" / "snapshot")
    [converted] = other["lora"]
    assert {key: converted[key] for key in ("layers", "ranks", "tensors")} == {
        key: lora[key] for key in ("layers", "ranks", "tensors")
    }
    mine, theirs = fused(snapshot, [lora]), fused(kohya.parent.parent.parent / "kohya" / "snapshot", [converted])
    for module in mine:
        for key, value in mine[module].items():
            torch.testing.assert_close(theirs[module][key], value, rtol=0, atol=1e-6)


def test_a_lora_for_another_base_fails_naming_the_layer(tiny_sdxl_snapshot, tmp_path):
    os.chdir(tmp_path)
    demo_lora(tiny_sdxl_snapshot, 0, 4, tmp_path / "xl.safetensors")
    spec = {"path": "xl.safetensors", "sha256": sha256_of(tmp_path / "xl.safetensors"), "scale": 1.0}
    mismatch = r"lora 0 lora-0\.safetensors \(.*\): key '(unet|text_encoder|text_encoder_2)\.[\w.]+lora_[AB]\.weight'"
    with pytest.raises(OverrideError, match=mismatch + r" (has shape|: the base model's \w+ has no layer|adapts)"):
        obtain_model({**BASE, "lora": [spec]}, tmp_path / "model" / "snapshot")
    save_file({"unet.no_such_block.to_q.lora_A.weight": torch.zeros(4, 32),
               "unet.no_such_block.to_q.lora_B.weight": torch.zeros(32, 4)}, tmp_path / "stray.safetensors")
    spec = {"path": "stray.safetensors", "sha256": sha256_of(tmp_path / "stray.safetensors"), "scale": 1.0}
    with pytest.raises(OverrideError, match="the base model's unet has no layer 'no_such_block.to_q'"):
        obtain_model({**BASE, "lora": [spec]}, tmp_path / "again" / "snapshot")


def test_tensors_that_find_no_layer_at_load_time_fail_the_job(adapted, tmp_path):
    record, snapshot = adapted
    [lora] = record["lora"]
    copy = tmp_path / "snapshot"
    shutil.copytree(snapshot, copy)
    with pytest.raises(OverrideError, match="80 of its tensors found a layer of the model, its record lists 81"):
        fused(copy, [{**lora, "tensors": 81}])


def test_the_demo_lora_is_deterministic_and_made_in_diffusers_layout(adapted, tmp_path):
    record, snapshot = adapted
    demo_lora(snapshot, 1, 4, tmp_path / "again.safetensors")
    assert sha256_of(tmp_path / "again.safetensors") == record["lora"][0]["sha256"]
    keys = list(load_file(tmp_path / "again.safetensors"))
    assert all(key.startswith(("unet.", "text_encoder.")) and ".lora_" in key for key in keys)
    assert StableDiffusionPipeline.lora_state_dict(load_file(tmp_path / "again.safetensors"))[1] is None


def test_a_lora_on_sdxl_adapts_the_unet_and_both_text_encoders(tiny_sdxl_snapshot, tmp_path):
    base = {"source": "tiny", "architecture": "sdxl", "seed": 0, "scheduler": "euler"}
    snapshot = tmp_path / "xl" / "snapshot"
    record = obtain_model({**base, "lora": [DEMO]}, snapshot)
    [lora] = record["lora"]
    assert set(lora["layers"]) == {"unet", "text_encoder", "text_encoder_2"}
    plain, _ = load_pipeline(snapshot, torch.float32)
    adapted, _ = load_pipeline(snapshot, torch.float32)
    apply_loras(adapted, snapshot, [lora])
    for module, layers in lora["layers"].items():
        before, after = getattr(plain, module).state_dict(), getattr(adapted, module).state_dict()
        assert sum(not torch.equal(before[key], after[key]) for key in before) == layers, module
