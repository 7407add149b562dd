"""Published erased weights on a base model: a state dict that replaces weights of the
base model's UNet or text encoder, all of them or some.

- UNet, whole: ESD's old release, RECE, SalUn, FMN (torch.save of a full diffusers UNet
  state dict); partial: UCE and ESD's new code (the cross-attention projections, loaded
  non-strictly).
- Text encoder, whole: AdvUnlearn (a CLIPTextModel folder on the hub), Safe-CLIP's text tower.

The model stage fetches the file (a hub file at a resolved commit, verified against the
hub's checksum, named directly or as the weights of a hub folder; a URL pinned by sha256;
a local file; or, for the demo, weights made from the base model's own), places it in the
snapshot beside the base pipeline and checks it against the base module before any image
job runs: every key in the file must exist in the module with the same shape, and the
first that does not is named (a file made for another base). The model record says where
the file came from, its sha256, whether it replaces the whole module, how many tensors,
and the share of the module's parameters it replaces. Generate jobs load it into the
module after the base weights: strictly when it is whole, otherwise only its keys.

Weights are read as safetensors, or from ``.pt``/``.ckpt``/``.bin`` files with
``torch.load(weights_only=True)``, which refuses any pickle that would run code.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from i2peval.errors import I2PEvalError
from i2peval.hub import ChecksumError, HubClient, fetch_snapshot, fetch_url, sha256_of

OVERRIDE_FOLDER = "overrides"
PICKLE_SUFFIXES = (".pt", ".ckpt", ".bin", ".pth")
SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)
# What the demo's stand-in for an erased UNet replaces: the cross-attention key and value
# projections, as UCE and ESD-x edit them.
CROSS_ATTENTION = ("attn2.to_k.", "attn2.to_v.")
# A buffer that transformers before 4.31 saved with every CLIP text encoder (AdvUnlearn's
# files have it) and later versions no longer keep in the state dict: skipped, and recorded.
STALE_BUFFERS = ("embeddings.position_ids",)


@dataclass(frozen=True)
class Component:
    """A pipeline module whose weights an override may replace."""

    name: str
    label: str
    weights: str  # the base weights, in the snapshot
    folder_weights: tuple[str, ...]  # a hub folder's weights file, by preference
    key_names: str
    # A prefix of key names that some library versions write and others do not (transformers
    # 5 keeps CLIP text encoders' weights without "text_model."): keys are compared without it.
    optional_prefix: str = ""

    @property
    def record_key(self) -> str:
        return f"{self.name}_override"

    def canonical(self, tensors: dict[str, Any]) -> dict[str, Any]:
        """`tensors` (or shapes) by key, each key without the optional prefix."""
        return {key.removeprefix(self.optional_prefix): value for key, value in tensors.items()}


COMPONENTS = {
    "unet": Component(
        "unet", "UNet", "unet/diffusion_pytorch_model.safetensors",
        ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"), "diffusers' UNet2DConditionModel",
    ),
    "text_encoder": Component(
        "text_encoder", "text encoder", "text_encoder/model.safetensors",
        ("model.safetensors", "pytorch_model.bin"), "transformers' CLIPTextModel", "text_model.",
    ),
}
UNET_WEIGHTS = COMPONENTS["unet"].weights


class OverrideError(I2PEvalError, ValueError):
    """An override's weights cannot be read, or do not fit the base model."""


def suffix_of(name: str) -> str:
    suffix = Path(name).suffix
    if suffix not in SUFFIXES:
        raise OverrideError(f"{name}: weights must be one of {', '.join(SUFFIXES)}")
    return suffix


def read_state_dict(path: Path) -> dict[str, Any]:
    """Every tensor of a weights file, by key (CPU)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    import pickle

    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise OverrideError(
            f"{path}: refused: not plain weights (torch.load with weights_only=True would have to run code "
            f"from the file to read it): {str(error).splitlines()[0]}"
        ) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(key, str) for key in loaded):
        raise OverrideError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    tensors = {key: value for key, value in loaded.items() if isinstance(value, torch.Tensor)}
    if len(tensors) != len(loaded):
        other = next(key for key in loaded if key not in tensors)
        raise OverrideError(f"{path}: {other!r} is not a tensor; a state dict holds only tensors")
    return tensors


def shapes_of(path: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor of a weights file; safetensors are read from their header alone."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(path, framework="pt") as handle:
            keys = handle.keys()  # the handle itself is not iterable
            return {key: tuple(handle.get_slice(key).get_shape()) for key in keys}
    return {key: tuple(tensor.shape) for key, tensor in read_state_dict(path).items()}


def stale_buffers(override: Iterable[str], base: Iterable[str]) -> list[str]:
    """The keys of `override` that are buffers older libraries saved and `base` no longer holds."""
    base = set(base)
    return sorted(key for key in override if key in STALE_BUFFERS and key not in base)


def check_fits(
    override: dict[str, tuple[int, ...]], base: dict[str, tuple[int, ...]], name: str, component: Component
) -> dict[str, Any]:
    """How `override` replaces the `base` module: whole or partly, how many tensors, the
    share of parameters, the stale buffers skipped; `OverrideError` naming the first key
    the base lacks or shapes otherwise."""
    skipped = stale_buffers(override, base)
    override = {key: shape for key, shape in override.items() if key not in skipped}
    if not override:
        raise OverrideError(f"{name}: holds no tensors")
    for key in sorted(override):
        if key not in base:
            raise OverrideError(
                f"{name}: key {key!r} is not a parameter of the base model's {component.label}: the file was made "
                f"for another base model, or with other key names ({component.key_names} names are needed)"
            )
        if tuple(override[key]) != tuple(base[key]):
            raise OverrideError(
                f"{name}: key {key!r} has shape {list(override[key])}, the base model's {component.label} "
                f"{list(base[key])}: the file was made for another base model"
            )

    replaced = sum(math.prod(shape) for shape in override.values())
    total = sum(math.prod(shape) for shape in base.values())
    return {
        "whole": set(override) == set(base),
        "tensors": len(override),
        "parameter_share": round(replaced / total, 6),
        **({"skipped": skipped} if skipped else {}),
    }


def moved_by_noise(tensor, generator):
    """`tensor` plus seeded noise of its own scale: the demo's stand-in for trained weights."""
    import torch

    noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
    return (tensor.float() + noise * tensor.float().std()).to(tensor.dtype).contiguous()


def demo_unet(base_weights: Path, seed: int, dest: Path) -> None:
    """The demo's stand-in for an erased UNet (UCE, ESD-x): the base UNet's cross-attention
    key and value projections, moved by seeded noise, saved as safetensors."""
    import torch
    from safetensors.torch import load_file, save_file

    generator = torch.Generator().manual_seed(seed)
    edited = {
        key: moved_by_noise(tensor, generator)
        for key, tensor in sorted(load_file(base_weights).items())
        if any(part in key for part in CROSS_ATTENTION)
    }
    save_file(edited, dest)


def demo_text_encoder(base_weights: Path, seed: int, dest: Path) -> None:
    """The demo's stand-in for an erased text encoder, in AdvUnlearn's format: the whole
    base text encoder, its last layer moved by seeded noise, saved with torch.save under
    the key names older transformers wrote, with their position_ids buffer."""
    import torch
    from safetensors.torch import load_file

    generator = torch.Generator().manual_seed(seed)
    tensors = COMPONENTS["text_encoder"].canonical(load_file(base_weights))
    last = f"encoder.layers.{max(int(key.split('.')[2]) for key in tensors if key.startswith('encoder.layers.'))}."
    edited = {
        f"text_model.{key}": moved_by_noise(tensor, generator) if key.startswith(last) else tensor
        for key, tensor in sorted(tensors.items())
    }
    positions = tensors["embeddings.position_embedding.weight"].shape[0]
    edited[f"text_model.{STALE_BUFFERS[0]}"] = torch.arange(positions).unsqueeze(0)
    torch.save(edited, dest)


DEMO_MAKERS = {"unet": (demo_unet, ".safetensors"), "text_encoder": (demo_text_encoder, ".bin")}


def fetch_weights(spec: dict[str, Any], folder: Path, stem: str, client: HubClient | None = None,
                  folder_weights: tuple[str, ...] = ()) -> tuple[Path, str, dict[str, Any]]:
    """Fetch the weights file `spec` names (a hub file, a hub folder's weights, a URL or a
    local file) into `folder` as `stem` with the file's own suffix: (path, sha256, where
    it came from). A sha256 the spec pins is checked; the hub's own checksums always are."""
    folder.mkdir(parents=True, exist_ok=True)
    if "repo_id" in spec:
        from i2peval.hub import HuggingFaceHub

        client = client or HuggingFaceHub()
        chosen: list[str] = []

        def select(paths: list[str]) -> list[str]:
            chosen[:] = _hub_file(paths, spec, folder_weights)
            return chosen

        fetched = fetch_snapshot(client, spec["repo_id"], spec["revision"], folder / "download", select=select)
        [filename] = chosen
        path = folder / f"{stem}{suffix_of(filename)}"
        shutil.move(folder / "download" / filename, path)
        shutil.rmtree(folder / "download")
        sha256 = fetched.files[filename]
        source = {"source": "hub", "repo_id": spec["repo_id"], "filename": filename,
                  "revision": spec["revision"], "commit": fetched.commit}
    elif "url" in spec:
        path = folder / f"{stem}{suffix_of(spec['url'].split('?')[0])}"
        fetch_url(spec["url"], spec["sha256"], path)  # verifies the sha256
        sha256 = spec["sha256"]
        source = {"source": "url", "url": spec["url"]}
    else:
        local = Path(spec["path"])
        if not local.is_file():
            raise OverrideError(f"{stem} override {local}: no such file")
        path = folder / f"{stem}{suffix_of(local.name)}"
        shutil.copyfile(local, path)
        sha256 = sha256_of(path)
        source = {"source": "file", "path": str(local)}
    if spec.get("sha256") and spec["sha256"] != sha256:
        path.unlink()
        raise ChecksumError(f"{stem} override {spec}: sha256 {sha256}, the configuration says {spec['sha256']}")
    return path, sha256, source


def _hub_file(paths: list[str], spec: dict[str, Any], folder_weights: tuple[str, ...]) -> list[str]:
    where = f"{spec['repo_id']}@{spec['revision']}"
    if "filename" in spec:
        if spec["filename"] not in paths:
            raise OverrideError(f"{where} has no file {spec['filename']!r}")
        return [spec["filename"]]
    candidates = [f"{spec['subfolder']}/{name}" for name in folder_weights]
    found = [candidate for candidate in candidates if candidate in paths]
    if not found:
        inside = sorted(path for path in paths if path.startswith(spec["subfolder"] + "/"))
        raise OverrideError(
            f"{where}: folder {spec['subfolder']!r} holds none of {', '.join(folder_weights)} "
            f"(it holds: {', '.join(inside) or 'nothing'}; weights split into shards are not supported)"
        )
    return found[:1]


def fetch_override(
    component: Component, spec: dict[str, Any], snapshot: Path, client: HubClient | None = None
) -> dict[str, Any]:
    """Fetch the override of `component` that `spec` names into `snapshot`'s overrides
    folder, check it against the base module there; return its record (the file's path in
    the snapshot included)."""
    folder = snapshot / OVERRIDE_FOLDER
    if "demo" in spec:
        make, suffix = DEMO_MAKERS[component.name]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{component.name}{suffix}"
        make(snapshot / component.weights, spec["demo"]["seed"], path)
        sha256, source = sha256_of(path), {"source": "demo", "seed": spec["demo"]["seed"]}
    else:
        path, sha256, source = fetch_weights(spec, folder, component.name, client, component.folder_weights)
    fit = check_fits(
        component.canonical(shapes_of(path)), component.canonical(shapes_of(snapshot / component.weights)),
        f"{component.name} override {path.name} ({source})", component,
    )
    return {**source, "file": f"{OVERRIDE_FOLDER}/{path.name}", "sha256": sha256, **fit}


def apply_override(module, component: Component, snapshot: Path, override: dict[str, Any]) -> None:
    """Load a recorded override into a loaded module: the whole state dict strictly, a
    partial one key by key (each key checked again against the module)."""
    path = snapshot / override["file"]
    own_names = {key.removeprefix(component.optional_prefix): key for key in module.state_dict()}
    expected = {key: tuple(module.state_dict()[name].shape) for key, name in own_names.items()}
    tensors = component.canonical(read_state_dict(path))
    for key in stale_buffers(tensors, expected):
        del tensors[key]
    check_fits({key: tuple(value.shape) for key, value in tensors.items()}, expected, str(path), component)
    module.load_state_dict({own_names[key]: value for key, value in tensors.items()}, strict=bool(override["whole"]))
