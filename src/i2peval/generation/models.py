"""Stage 2: models as local, verified snapshots, and pipelines built from them.

A hub model is downloaded at the commit its configured revision resolves to, only its
safetensors weights (no pickled ``.bin``, no fp16/EMA variants, no safety checker, no
remote code), every file checked against the hub's checksum. The demo model is a tiny
random Stable Diffusion pipeline built here, deterministically from a seed, with the
real CLIP BPE vocabulary that ships inside open_clip. Both end as the same thing: a
folder that ``StableDiffusionPipeline.from_pretrained`` reads offline, plus a record of
where it came from.
"""

from __future__ import annotations

import copy
import gzip
from pathlib import Path
from typing import Any

import torch

from i2peval.errors import I2PEvalError
from i2peval.generation.mitigations import Mitigation
from i2peval.hub import HubClient, fetch_snapshot, sha256_of

PIPELINE_FOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
WEIGHT_FOLDERS = ("unet", "vae", "text_encoder")
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "model.safetensors")
TOKENIZER_FILES = (
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
CLIP_VOCAB_SIZE = 49408


class ModelError(I2PEvalError, RuntimeError):
    """A model cannot be resolved or loaded under this project's rules."""


def select_pipeline_files(paths: list[str], source: str) -> list[str]:
    """Files of a diffusers repository needed for text-to-image generation, safetensors only."""
    wanted = ["model_index.json"] if "model_index.json" in paths else []
    if not wanted:
        raise ModelError(f"{source}: no model_index.json, not a diffusers pipeline repository")
    for folder in PIPELINE_FOLDERS:
        in_folder = [path for path in paths if path.startswith(folder + "/") and path.count("/") == 1]
        wanted += [path for path in in_folder if path.endswith("config.json")]
        if folder == "tokenizer":
            wanted += [path for path in in_folder if path.split("/")[1] in TOKENIZER_FILES]
        if folder in WEIGHT_FOLDERS:
            weights = [path for path in in_folder if path.split("/")[1] in WEIGHT_FILES]
            if not weights:
                raise ModelError(
                    f"{source}: {folder}/ has no safetensors weights "
                    f"({' or '.join(WEIGHT_FILES)}); this project loads no pickled weights"
                )
            wanted += weights
    return sorted(set(wanted))


def fetch_hub_model(client: HubClient, repo_id: str, revision: str, dest: Path) -> dict[str, Any]:
    """Download a pipeline snapshot into `dest`; return its provenance record."""
    snapshot = fetch_snapshot(
        client,
        repo_id,
        revision,
        dest,
        select=lambda paths: select_pipeline_files(paths, f"{repo_id}@{revision}"),
    )
    return {"source": "hub", **snapshot.as_record()}


def write_clip_tokenizer(dest: Path) -> None:
    """Save a CLIPTokenizer built from the CLIP BPE merges that ship with open_clip."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    with gzip.open(default_bpe(), "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    # every vocabulary entry but the 2 x 256 byte tokens and the 2 special tokens is a merge
    merges = [tuple(line.split()) for line in lines[1 : 1 + CLIP_VOCAB_SIZE - 2 * 256 - 2]]
    byte_tokens = list(bytes_to_unicode().values())
    tokens = byte_tokens + [token + "</w>" for token in byte_tokens]
    tokens += ["".join(merge) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ModelError(f"CLIP vocabulary has {len(vocab)} tokens, expected {CLIP_VOCAB_SIZE}")
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    tokenizer.save_pretrained(dest)


def build_tiny_pipeline(dest: Path, seed: int, scheduler: str = "pndm") -> dict[str, Any]:
    """Write a tiny random Stable Diffusion pipeline (64 px images) to `dest`.

    Same classes and file layout as a real SD 1.x checkpoint, a few hundred thousand
    parameters besides the 49,408-token embedding; the weights are a function of `seed`.
    """
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    schedulers = {
        "pndm": lambda: PNDMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            skip_prk_steps=True,
            steps_offset=1,
        ),
        "ddim": lambda: DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        ),
    }
    if scheduler not in schedulers:
        raise ModelError(f"tiny model scheduler {scheduler!r} is not one of {sorted(schedulers)}")
    dest.mkdir(parents=True, exist_ok=True)
    write_clip_tokenizer(dest / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(dest / "tokenizer")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=16,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=CLIP_VOCAB_SIZE,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=schedulers[scheduler](),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(dest, safe_serialization=True)
    files = {
        str(path.relative_to(dest)): sha256_of(path)
        for path in sorted(dest.rglob("*"))
        if path.is_file()
    }
    return {"source": "tiny", "seed": seed, "scheduler": scheduler, "commit": None, "files": files}


def load_text_to_image(snapshot: Path, dtype: torch.dtype, device: torch.device):
    """Load a snapshot as a StableDiffusionPipeline: offline, safetensors only, no safety checker."""
    from diffusers import StableDiffusionPipeline

    if not (snapshot / "model_index.json").is_file():
        raise ModelError(f"{snapshot} is not a model snapshot (no model_index.json)")
    pipeline = StableDiffusionPipeline.from_pretrained(
        snapshot,
        dtype=dtype,
        use_safetensors=True,
        local_files_only=True,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


def always_truncating(tokenizer):
    """A copy of `tokenizer` that truncates to its model_max_length unless told otherwise.

    The deprecated SEGA and SLD pipelines tokenize a batch once more without truncation,
    only to warn about truncated prompts; with several prompts longer than 77 tokens in one
    batch that call fails to build a tensor. Truncating it changes no embedding.
    """

    class AlwaysTruncating(type(tokenizer)):
        def __call__(self, *args, **kwargs):
            kwargs.setdefault("truncation", True)
            return super().__call__(*args, **kwargs)

    patched = copy.copy(tokenizer)
    patched.__class__ = AlwaysTruncating
    return patched


def build_pipeline(base, mitigation: Mitigation):
    """The diffusers pipeline that implements `mitigation`, sharing `base`'s components."""
    components = {
        name: getattr(base, name) for name in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")
    }
    extras = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    if mitigation.kind in ("none", "negative_prompt"):
        return base
    if mitigation.kind == "sega":
        from diffusers import SemanticStableDiffusionPipeline

        pipeline = SemanticStableDiffusionPipeline(
            **{**components, "tokenizer": always_truncating(base.tokenizer)}, **extras
        )
    elif mitigation.kind == "sld":
        from diffusers import StableDiffusionPipelineSafe

        pipeline = StableDiffusionPipelineSafe(
            **{**components, "tokenizer": always_truncating(base.tokenizer)}, **extras
        )
        pipeline.safety_concept = mitigation.concept
    else:
        raise ModelError(f"no pipeline for mitigation kind {mitigation.kind!r}")
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
