"""Published erased weights on a base model: a UNet state dict that replaces the base
UNet's weights, all of them (ESD's old release, RECE, SalUn, FMN: torch.save of a full
diffusers UNet state dict) or some (UCE, ESD's new code: the cross-attention projections,
loaded non-strictly).

The model stage fetches the file (a hub file at a resolved commit, verified against the
hub's checksum; a URL pinned by sha256; a local file; or, for the demo, a partial state
dict made from the base model's own weights), places it in the snapshot beside the base
pipeline and checks it against the base UNet before any image job runs: every key in the
file must exist in the UNet with the same shape, and the first that does not is named
(a file made for another base). The model record says where the file came from, its
sha256, whether it replaces the whole UNet, how many tensors, and the share of the UNet's
parameters it replaces. Generate jobs load it into the UNet after the base weights:
strictly when it is whole, otherwise only its keys.

Weights are read as safetensors, or from ``.pt``/``.ckpt``/``.bin`` files with
``torch.load(weights_only=True)``, which refuses any pickle that would run code.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from i2peval.errors import I2PEvalError
from i2peval.hub import ChecksumError, HubClient, fetch_snapshot, fetch_url, sha256_of

UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
OVERRIDE_FOLDER = "overrides"
PICKLE_SUFFIXES = (".pt", ".ckpt", ".bin", ".pth")
SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)
# What the demo's stand-in for an erased model replaces: the cross-attention key and
# value projections, as UCE and ESD-x edit them.
CROSS_ATTENTION = ("attn2.to_k.", "attn2.to_v.")


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


def check_fits(override: dict[str, tuple[int, ...]], base: dict[str, tuple[int, ...]], name: str) -> dict[str, Any]:
    """How `override` replaces the `base` UNet: whole or partly, how many tensors, the share
    of parameters; `OverrideError` naming the first key the base lacks or shapes otherwise."""
    if not override:
        raise OverrideError(f"{name}: holds no tensors")
    for key in sorted(override):
        if key not in base:
            raise OverrideError(
                f"{name}: key {key!r} is not a parameter of the base model's UNet: the file was made for another "
                "base model, or with other key names (diffusers' UNet2DConditionModel names are needed)"
            )
        if tuple(override[key]) != tuple(base[key]):
            raise OverrideError(
                f"{name}: key {key!r} has shape {list(override[key])}, the base model's UNet {list(base[key])}: "
                "the file was made for another base model"
            )

    replaced = sum(math.prod(shape) for shape in override.values())
    total = sum(math.prod(shape) for shape in base.values())
    return {
        "whole": set(override) == set(base),
        "tensors": len(override),
        "parameter_share": round(replaced / total, 6),
    }


def demo_partial_state_dict(base_weights: Path, seed: int, dest: Path) -> None:
    """The demo's stand-in for an erased model: the base UNet's cross-attention key and
    value projections, moved by seeded noise of their own scale, saved as safetensors."""
    import torch
    from safetensors.torch import load_file, save_file

    generator = torch.Generator().manual_seed(seed)
    edited = {}
    for key, tensor in sorted(load_file(base_weights).items()):
        if any(part in key for part in CROSS_ATTENTION):
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
            edited[key] = (tensor.float() + noise * tensor.float().std()).to(tensor.dtype).contiguous()
    save_file(edited, dest)


def fetch_unet_override(spec: dict[str, Any], snapshot: Path, client: HubClient | None = None) -> dict[str, Any]:
    """Fetch the UNet override `spec` names into `snapshot`'s overrides folder, check it
    against the base UNet there; return its record (the file's path in the snapshot
    included)."""
    folder = snapshot / OVERRIDE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    if "repo_id" in spec:
        from i2peval.hub import HuggingFaceHub

        client = client or HuggingFaceHub()
        name = f"unet{suffix_of(spec['filename'])}"
        fetched = fetch_snapshot(
            client, spec["repo_id"], spec["revision"], folder / "download", select=lambda paths: _one(paths, spec)
        )
        shutil.move(folder / "download" / spec["filename"], folder / name)
        shutil.rmtree(folder / "download")
        sha256 = fetched.files[spec["filename"]]
        source = {"source": "hub", "repo_id": spec["repo_id"], "filename": spec["filename"],
                  "revision": spec["revision"], "commit": fetched.commit}
    elif "url" in spec:
        name = f"unet{suffix_of(spec['url'].split('?')[0])}"
        fetch_url(spec["url"], spec["sha256"], folder / name)  # verifies the sha256
        sha256 = spec["sha256"]
        source = {"source": "url", "url": spec["url"]}
    elif "path" in spec:
        local = Path(spec["path"])
        if not local.is_file():
            raise OverrideError(f"unet override {local}: no such file")
        name = f"unet{suffix_of(local.name)}"
        shutil.copyfile(local, folder / name)
        sha256 = sha256_of(folder / name)
        source = {"source": "file", "path": str(local)}
    else:
        name = "unet.safetensors"
        demo_partial_state_dict(snapshot / UNET_WEIGHTS, spec["demo"]["seed"], folder / name)
        sha256 = sha256_of(folder / name)
        source = {"source": "demo", "seed": spec["demo"]["seed"]}
    path = folder / name
    if spec.get("sha256") and spec["sha256"] != sha256:
        path.unlink()
        raise ChecksumError(f"unet override {spec}: sha256 {sha256}, the configuration says {spec['sha256']}")
    fit = check_fits(shapes_of(path), shapes_of(snapshot / UNET_WEIGHTS), f"unet override {path.name} ({source})")
    return {**source, "file": f"{OVERRIDE_FOLDER}/{name}", "sha256": sha256, **fit}


def _one(paths: list[str], spec: dict[str, Any]) -> list[str]:
    if spec["filename"] not in paths:
        raise OverrideError(f"{spec['repo_id']}@{spec['revision']} has no file {spec['filename']!r}")
    return [spec["filename"]]


def apply_unet_override(unet, snapshot: Path, override: dict[str, Any]) -> None:
    """Load a recorded override into a loaded UNet: the whole state dict strictly, a
    partial one key by key (each key checked again against the UNet)."""
    path = snapshot / override["file"]
    tensors = read_state_dict(path)
    expected = {key: tuple(value.shape) for key, value in unet.state_dict().items()}
    check_fits({key: tuple(value.shape) for key, value in tensors.items()}, expected, str(path))
    unet.load_state_dict(tensors, strict=bool(override["whole"]))
