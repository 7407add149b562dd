"""Stage 2, real models: a diffusers pipeline snapshot from the Hugging Face hub, verified.

A hub model is downloaded at the commit its configured revision resolves to. Its
model_index.json comes first: a pipeline class the engine does not support
(architectures.py) is refused before any weights are fetched. Then only what the
architecture needs: configs, tokenizers and safetensors weights, whole or in shards
with their index (no pickled ``.bin``, no fp16/EMA variants, no safety checker, no
remote code), every file checked against the hub's checksum.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from i2peval.errors import I2PEvalError
from i2peval.hub import HubClient, Snapshot, fetch_snapshot
from i2peval.models.architectures import (
    ARCHITECTURES,
    Architecture,
    architecture_of_class,
    describe_snapshot,
    read_model_index,
)

# The later stages of a cascade, fetched as parts of one model only
CASCADE_STAGES = {
    stage.pipeline_class: stage for architecture in ARCHITECTURES.values() for _, stage in architecture.cascade
}

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "model.safetensors")
# Weights too large for one file (SD 3.5's T5 encoder): an index naming shards
SHARDED_WEIGHTS = re.compile(r"^(diffusion_pytorch_model|model)-\d{5}-of-\d{5}\.safetensors$")
WEIGHT_INDEXES = tuple(f"{name}.index.json" for name in WEIGHT_FILES)
TOKENIZER_FILES = (
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "sentencepiece.bpe.model",  # XLM-R (AltDiffusion): a protobuf, no pickle
    "spiece.model",  # T5 (SD 3): a protobuf, no pickle
)


class ModelError(I2PEvalError, RuntimeError):
    """A model cannot be resolved or loaded under this project's rules."""


def select_pipeline_files(
    paths: list[str], source: str, architecture: Architecture = ARCHITECTURES["sd"]
) -> list[str]:
    """Files of a diffusers repository that `architecture` needs to generate, safetensors only."""
    wanted = ["model_index.json"] if "model_index.json" in paths else []
    if not wanted:
        raise ModelError(f"{source}: no model_index.json, not a diffusers pipeline repository")
    tokenizer_folders = {tokenizer for tokenizer, _ in architecture.text_folders}
    for folder in architecture.folders:
        in_folder = [path for path in paths if path.startswith(folder + "/") and path.count("/") == 1]
        wanted += [path for path in in_folder if path.endswith("config.json")]
        if folder in tokenizer_folders:
            wanted += [path for path in in_folder if path.split("/")[1] in TOKENIZER_FILES]
        if folder in architecture.weight_folders:
            weights = [path for path in in_folder if path.split("/")[1] in WEIGHT_FILES]
            if not weights:
                weights = [
                    path
                    for path in in_folder
                    if path.split("/")[1] in WEIGHT_INDEXES or SHARDED_WEIGHTS.match(path.split("/")[1])
                ]
            if not weights:
                raise ModelError(
                    f"{source}: {folder}/ has no safetensors weights "
                    f"({' or '.join(WEIGHT_FILES)}); this project loads no pickled weights. Where the hub "
                    "converted them in a pull request, set the model's revision to its refs/pr/<n>"
                )
            wanted += weights
    return sorted(set(wanted))


def fetch_hub_model(
    client: HubClient,
    repo_id: str,
    revision: str,
    dest: Path,
    cascade: dict[str, dict[str, str]] | None = None,
    accept: Callable[[Architecture], None] | None = None,
) -> dict[str, Any]:
    """Download a pipeline snapshot of a supported architecture into `dest`; return its record.

    A cascade (DeepFloyd IF) needs `cascade`, the repository and revision of each later
    stage: each is fetched the same way into its folder inside `dest`, and its commit is
    recorded. Every repository's model_index.json comes first: an unsupported pipeline
    class (`ArchitectureError`), a cascade configured wrongly (`ModelError`) and whatever
    `accept` raises for the architecture are refused before any weights are fetched.
    """
    source = f"{repo_id}@{revision}"
    architecture, commit = pipeline_index(client, repo_id, revision, dest)
    if architecture.name not in ARCHITECTURES:
        raise ModelError(
            f"{source} is {architecture.description}, a later stage of a cascade: configure the cascade's first "
            "stage as the model and this repository under its cascade"
        )
    if architecture.cascade and not cascade:
        stages = ", ".join(f"{folder} ({stage.pipeline_class})" for folder, stage in architecture.cascade)
        raise ModelError(
            f"{source} is {architecture.description}: set the model's cascade: {stages}, each a repo_id and revision "
            "(the harness ran DeepFloyd/IF-II-L-v1.0 and stabilityai/stable-diffusion-x4-upscaler)"
        )
    if cascade and not architecture.cascade:
        raise ModelError(f"{source} is {architecture.description}, not a cascade: remove the model's cascade")
    if accept is not None:
        accept(architecture)
    commits = {}
    for folder, stage in architecture.cascade:
        spec = cascade[folder]
        fetched, commits[folder] = pipeline_index(client, spec["repo_id"], spec["revision"], dest / folder)
        if fetched != stage:
            raise ModelError(
                f"{spec['repo_id']}@{spec['revision']}: the cascade's {folder} must be a {stage.pipeline_class}, "
                f"not a {fetched.pipeline_class}"
            )
    snapshot = fetch_pipeline_files(client, repo_id, commit, dest, source, architecture)
    record = {"source": "hub", **snapshot.as_record(), "revision": revision, **describe_snapshot(dest)}
    stages = {}
    for folder, stage in architecture.cascade:
        spec = cascade[folder]
        stage_source = f"{spec['repo_id']}@{spec['revision']}"
        fetched = fetch_pipeline_files(client, spec["repo_id"], commits[folder], dest / folder, stage_source, stage)
        stages[folder] = {**spec, "commit": commits[folder]}
        record["files"] |= {f"{folder}/{path}": sha256 for path, sha256 in fetched.files.items()}
    return record | ({"cascade": stages} if stages else {})


def pipeline_index(client: HubClient, repo_id: str, revision: str, dest: Path) -> tuple[Architecture, str]:
    """The architecture of a diffusers repository, read from its model_index.json (the only
    file fetched into `dest`), and the commit `revision` resolved to."""
    source = f"{repo_id}@{revision}"

    def model_index_only(paths: list[str]) -> list[str]:
        if "model_index.json" not in paths:
            raise ModelError(f"{source}: no model_index.json, not a diffusers pipeline repository")
        return ["model_index.json"]

    index = fetch_snapshot(client, repo_id, revision, dest, select=model_index_only)
    pipeline_class = read_model_index(dest / "model_index.json", source)["_class_name"]
    return CASCADE_STAGES.get(pipeline_class) or architecture_of_class(pipeline_class, source), index.commit


def fetch_pipeline_files(
    client: HubClient, repo_id: str, commit: str, dest: Path, source: str, architecture: Architecture
) -> Snapshot:
    """The files of a repository at `commit` that `architecture` needs, fetched into `dest`."""
    return fetch_snapshot(
        client, repo_id, commit, dest, select=lambda paths: select_pipeline_files(paths, source, architecture)
    )
