"""Adapters on a base model: LoRA files (adapter-style erasures such as SPM, or any LoRA a
user trained), read as plain tensors (safetensors, or torch.load with weights_only=True),
loaded through diffusers' LoRA loaders, which read the diffusers/PEFT and Kohya key
layouts, and fused into the weights with their scales.

The model stage fetches each file (sources as for the other overrides, or for the demo a
LoRA made on the base model itself) and checks it against the base snapshot's weights
from their headers alone: every adapted layer must exist in the UNet or a text encoder,
with the adapter's input and output sizes; the first that does not is named. Generate
jobs load the adapters, check that every one of their tensors found its layer (diffusers
only warns about those that did not), set their scales and fuse them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from i2peval.hub import HubClient, sha256_of
from i2peval.models.overrides import (
    COMPONENTS,
    OVERRIDE_FOLDER,
    OverrideError,
    fetch_weights,
    read_state_dict,
    shapes_of,
)

# Where each module that a LoRA can adapt keeps its weights in a snapshot, by the key
# prefix diffusers' loaders give it.
ADAPTABLE = {
    **{name: component.weights for name, component in COMPONENTS.items()},
    "text_encoder_2": "text_encoder_2/model.safetensors",
}
LORA_MATRICES = (".lora_A.", ".lora_B.")
DEMO_UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
DEMO_TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def layer_name(name: str) -> str:
    """A layer's name without the "text_model." of text encoders that transformers 5 no
    longer writes (UNet names never start with it)."""
    return name.removeprefix(COMPONENTS["text_encoder"].optional_prefix)


def peft_layout(tensors: dict[str, Any], pipeline_class) -> dict[str, Any]:
    """A LoRA's tensors under the names diffusers loads them by: ``<module>.<layer>.lora_A.weight``
    and ``lora_B``, the module being unet, text_encoder or text_encoder_2 (Kohya and older
    diffusers layouts converted as diffusers' loaders convert them)."""
    from diffusers.utils.state_dict_utils import (
        convert_state_dict_to_diffusers,
        convert_state_dict_to_peft,
        convert_unet_state_dict_to_peft,
    )

    converted, _ = pipeline_class.lora_state_dict(dict(tensors))
    by_module: dict[str, dict[str, Any]] = {}
    for key, value in converted.items():
        module, _, name = key.partition(".")
        by_module.setdefault(module, {})[name] = value
    layout = {}
    for module, part in by_module.items():
        if module == "unet":
            part = convert_unet_state_dict_to_peft(part)
        elif not any(matrix in f".{name}" for name in part for matrix in LORA_MATRICES):
            part = convert_state_dict_to_peft(convert_state_dict_to_diffusers(part))
        layout.update({f"{module}.{name}": value for name, value in part.items()})
    return layout


def check_lora(path: Path, snapshot: Path, pipeline_class, name: str) -> dict[str, Any]:
    """What the LoRA file `path` (called `name` in messages) adapts in the base snapshot
    (layers per module, its ranks, its tensors); `OverrideError` naming the first layer
    the base lacks or sizes otherwise."""
    converted = peft_layout(read_state_dict(path), pipeline_class)
    matrices = {key: tuple(value.shape) for key, value in converted.items() if any(p in key for p in LORA_MATRICES)}
    if not matrices:
        raise OverrideError(f"{name}: holds no LoRA matrices (lora_A/lora_B, lora_down/lora_up)")
    bases: dict[str, dict[str, tuple[int, ...]]] = {}
    layers: dict[str, set[str]] = {}
    ranks = set()
    for key, shape in sorted(matrices.items()):
        module, _, tensor = key.partition(".")
        if module not in ADAPTABLE or not (snapshot / ADAPTABLE[module]).is_file():
            raise OverrideError(f"{name}: key {key!r} adapts {module!r}, which the base model does not have")
        if module not in bases:
            weights = shapes_of(snapshot / ADAPTABLE[module])
            bases[module] = {layer_name(base_key): base_shape for base_key, base_shape in weights.items()}
        base = bases[module]
        layer, _, matrix = tensor.partition(".lora_")
        layer, matrix = layer_name(layer), matrix[0]
        target = base.get(f"{layer}.weight")
        if target is None:
            raise OverrideError(
                f"{name}: key {key!r}: the base model's {module} has no layer {layer!r}: the file was made "
                "for another base model"
            )
        size, expected = (shape[1], target[1]) if matrix == "A" else (shape[0], target[0])
        if size != expected:
            raise OverrideError(
                f"{name}: key {key!r} has shape {list(shape)}, the base model's layer {module}.{layer} "
                f"{list(target)}: the file was made for another base model"
            )
        layers.setdefault(module, set()).add(layer)
        ranks.add(shape[0] if matrix == "A" else shape[1])
    return {
        "layers": {module: len(names) for module, names in sorted(layers.items())},
        "ranks": sorted(ranks),
        "tensors": len(matrices),
    }


def demo_lora(snapshot: Path, seed: int, rank: int, dest: Path) -> None:
    """The demo's LoRA, made on the base model itself: rank-`rank` adapters on the UNet's
    attention projections and each text encoder's (SDXL's second too), filled with
    seeded noise that moves each layer by about its own scale, saved in diffusers' layout."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    from i2peval.models.architectures import load_pipeline

    pipeline, _ = load_pipeline(snapshot, torch.float32)
    generator = torch.Generator().manual_seed(seed)
    layers = {}
    adapted = [(name, DEMO_TEXT_ENCODER_TARGETS) for name in ("text_encoder", "text_encoder_2")
               if getattr(pipeline, name, None) is not None]
    for name, targets in [("unet", DEMO_UNET_TARGETS), *adapted]:
        module = getattr(pipeline, name)
        inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=targets), module)
        with torch.no_grad():
            for key, parameter in sorted(module.named_parameters()):
                if "lora_" in key:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) / parameter.shape[1] ** 0.5)
        layers[name] = get_peft_model_state_dict(module)
    type(pipeline).save_lora_weights(
        dest.parent, weight_name=dest.name, **{f"{name}_lora_layers": tensors for name, tensors in layers.items()}
    )


def fetch_lora(
    spec: dict[str, Any], index: int, snapshot: Path, pipeline_class, client: HubClient | None = None
) -> dict[str, Any]:
    """Fetch the `index`-th LoRA of a model into `snapshot`'s overrides folder, check it
    against the base there; return its record."""
    folder = snapshot / OVERRIDE_FOLDER
    stem = f"lora-{index}"
    if "demo" in spec:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stem}.safetensors"
        demo_lora(snapshot, spec["demo"]["seed"], spec["demo"]["rank"], path)
        sha256, source = sha256_of(path), {"source": "demo", **spec["demo"]}
    else:
        path, sha256, source = fetch_weights(spec, folder, stem, client)
    fit = check_lora(path, snapshot, pipeline_class, f"lora {index} {path.name} ({source})")
    return {**source, "file": f"{OVERRIDE_FOLDER}/{path.name}", "sha256": sha256, "scale": spec["scale"], **fit}


def apply_loras(pipeline, snapshot: Path, loras: list[dict[str, Any]]) -> None:
    """Load the recorded LoRAs into a loaded pipeline, check that each of their tensors
    found its layer, and fuse them into the weights with their scales."""
    if not loras:
        return
    names = [f"lora-{index}" for index in range(len(loras))]
    for name, lora in zip(names, loras, strict=True):
        pipeline.load_lora_weights(read_state_dict(snapshot / lora["file"]), adapter_name=name)
        loaded = sum(
            1
            for module in ADAPTABLE
            if getattr(pipeline, module, None) is not None
            for key, _ in getattr(pipeline, module).named_parameters()
            if f".{name}." in key and any(part in key for part in LORA_MATRICES)
        )
        if loaded != lora["tensors"]:
            raise OverrideError(
                f"{snapshot / lora['file']}: {loaded} of its tensors found a layer of the model, its record "
                f"lists {lora['tensors']}: diffusers ignored the others"
            )
    pipeline.set_adapters(names, adapter_weights=[lora["scale"] for lora in loras])
    pipeline.fuse_lora(components=[module for module in ADAPTABLE if getattr(pipeline, module, None) is not None],
                       adapter_names=names)
    pipeline.unload_lora_weights()
