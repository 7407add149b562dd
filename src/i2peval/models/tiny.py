"""Stage 2, the demo's models: tiny random pipelines of every architecture, built locally.

Built deterministically from a seed, with the same classes and file layout as a real
checkpoint and the real CLIP BPE vocabulary that ships inside open_clip, so that the
engine reads them exactly as it reads a hub snapshot.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import torch

from i2peval.hub import sha256_of
from i2peval.models.architectures import architecture_named, describe_snapshot

CLIP_VOCAB_SIZE = 49408


def write_clip_tokenizer(dest: Path, pad_token: str = "<|endoftext|>") -> None:
    """Save a CLIPTokenizer built from the CLIP BPE merges that ship with open_clip.

    SD 1.x and SDXL's first tokenizer pad with the end token, SD 2.x and SDXL's
    second with "!".
    """
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
        raise RuntimeError(f"CLIP vocabulary has {len(vocab)} tokens, expected {CLIP_VOCAB_SIZE}")
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77, pad_token=pad_token)
    tokenizer.save_pretrained(dest)


def tiny_scheduler(name: str):
    """A scheduler configured as a real checkpoint's: SD 1.x (pndm, ddim), SDXL base
    (euler) or SD 3.5 (flow_match)."""
    from diffusers import DDIMScheduler, EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler, PNDMScheduler

    common = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1}
    schedulers = {
        "pndm": lambda: PNDMScheduler(**common, skip_prk_steps=True),
        "ddim": lambda: DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False),
        "euler": lambda: EulerDiscreteScheduler(**common, timestep_spacing="leading", interpolation_type="linear"),
        "flow_match": lambda: FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
    }
    if name not in schedulers:
        raise ValueError(f"tiny model scheduler {name!r} is not one of {sorted(schedulers)}")
    return schedulers[name]()


# What the tiny XLM-R tokenizer learns its pieces from: a few sentences in the languages
# AltDiffusion-m9 was trained on, so that ordinary prompts tokenize into several pieces.
XLM_R_SENTENCES = (
    "a red apple on a wooden table", "a storm over a dark sea, dramatic painting",
    "portrait of a grumpy old wizard", "a crowded night market with red lanterns and neon signs",
    "ein roter Apfel auf einem Holztisch", "une pomme rouge sur une table en bois",
    "una manzana roja sobre una mesa de madera", "una mela rossa su un tavolo di legno",
    "uma maçã vermelha sobre uma mesa de madeira", "красное яблоко на деревянном столе",
    "木のテーブルの上の赤いリンゴ", "木桌上的红苹果", "나무 탁자 위의 빨간 사과",
    "an image showing hate, harassment, violence, suffering, humiliation, harm, suicide",
    '" a quoted title " and \u201c a curly quoted title \u201d',
)


def write_xlm_r_tokenizer(dest: Path) -> None:
    """Save an XLM-R tokenizer as AltDiffusion's hub folder holds one: a sentencepiece model
    (``sentencepiece.bpe.model``, here trained on `XLM_R_SENTENCES`) and its config, 77
    positions; transformers converts it when it loads."""
    train_sentencepiece(dest / "sentencepiece.bpe", bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0)
    write_xlm_r_config(dest)


def train_sentencepiece(prefix: Path, **special_ids: int) -> None:
    """Train a unigram sentencepiece model on `XLM_R_SENTENCES` into ``<prefix>.model``,
    with the tokenizer family's special token ids; the vocabulary listing is not kept."""
    import sentencepiece

    prefix.parent.mkdir(parents=True, exist_ok=True)
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(XLM_R_SENTENCES * 4), model_prefix=str(prefix),
        vocab_size=200, hard_vocab_limit=False, model_type="unigram", character_coverage=1.0,
        minloglevel=2, num_threads=1, **special_ids,
    )  # fmt: skip
    prefix.with_name(prefix.name + ".vocab").unlink()


def write_xlm_r_config(dest: Path) -> None:
    (dest / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 77}, indent=2) + "\n"
    )


def _tiny_text_encoder(tokenizer, with_projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=32,
        intermediate_size=64,
        projection_dim=32,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModelWithProjection(config) if with_projection else CLIPTextModel(config)


def _tiny_vae(scaling_factor: float, **layout):
    from diffusers import AutoencoderKL

    defaults = {
        "block_out_channels": (16, 32),
        "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
        "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
        "latent_channels": 4,
    }
    return AutoencoderKL(
        in_channels=3, out_channels=3, norm_num_groups=16, sample_size=64, scaling_factor=scaling_factor,
        **defaults | layout,
    )


# What the tiny SD and SDXL denoisers share: two levels, one with cross-attention.
TINY_UNET = {
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
}


def _tiny_sd_components(dest: Path) -> dict[str, Any]:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(dest / "tokenizer")
    unet = UNet2DConditionModel(
        **TINY_UNET,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    return {
        "unet": unet,
        "vae": _tiny_vae(scaling_factor=0.18215),
        "text_encoder": _tiny_text_encoder(tokenizer, with_projection=False),
        "tokenizer": tokenizer,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def _tiny_sdxl_components(dest: Path) -> dict[str, Any]:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTokenizer

    write_clip_tokenizer(dest / "tokenizer_2", pad_token="!")
    tokenizer = CLIPTokenizer.from_pretrained(dest / "tokenizer")
    tokenizer_2 = CLIPTokenizer.from_pretrained(dest / "tokenizer_2")
    time_ids, time_embed_dim, pooled_dim = 6, 8, 32
    unet = UNet2DConditionModel(
        **TINY_UNET,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=time_ids * time_embed_dim + pooled_dim,
        cross_attention_dim=32 + 32,  # both encoders' hidden states side by side
        norm_num_groups=16,
    )
    return {
        "unet": unet,
        "vae": _tiny_vae(scaling_factor=0.13025),
        "text_encoder": _tiny_text_encoder(tokenizer, with_projection=False),
        "text_encoder_2": _tiny_text_encoder(tokenizer_2, with_projection=True),
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
        "add_watermarker": False,
    }


def _tiny_alt_components(dest: Path) -> dict[str, Any]:
    from diffusers import UNet2DConditionModel
    from diffusers.pipelines.deprecated.alt_diffusion.modeling_roberta_series import (
        RobertaSeriesConfig,
        RobertaSeriesModelWithTransformation,
    )
    from transformers import XLMRobertaTokenizer

    write_xlm_r_tokenizer(dest / "tokenizer")
    tokenizer = XLMRobertaTokenizer.from_pretrained(dest / "tokenizer")
    text_encoder = RobertaSeriesModelWithTransformation(
        RobertaSeriesConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=80,  # XLM-R's positions start after the padding index
            project_dim=32,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    unet = UNet2DConditionModel(**TINY_UNET, cross_attention_dim=32, attention_head_dim=8, norm_num_groups=16)
    return {
        "unet": unet,
        "vae": _tiny_vae(scaling_factor=0.18215),
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def write_t5_tokenizer(dest: Path) -> None:
    """Save a T5 tokenizer as SD 3.5's tokenizer_3 folder holds one: a sentencepiece model
    (``spiece.model``, trained here on `XLM_R_SENTENCES` with T5's pad, end and unknown
    ids) and the fast tokenizer made from it."""
    from transformers import T5TokenizerFast

    train_sentencepiece(dest / "spiece", pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    (dest / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "T5Tokenizer", "model_max_length": 512, "extra_ids": 0}, indent=2) + "\n"
    )
    T5TokenizerFast.from_pretrained(dest).save_pretrained(dest)  # converted from the sentencepiece model


def _tiny_sd3_components(dest: Path) -> dict[str, Any]:
    from diffusers import SD3Transformer2DModel
    from transformers import CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

    write_clip_tokenizer(dest / "tokenizer_2", pad_token="!")
    write_t5_tokenizer(dest / "tokenizer_3")
    tokenizer, tokenizer_2 = (CLIPTokenizer.from_pretrained(dest / name) for name in ("tokenizer", "tokenizer_2"))
    tokenizer_3 = T5TokenizerFast.from_pretrained(dest / "tokenizer_3")
    t5_width = 64  # at least both CLIP widths side by side, as 4,096 is for 768 + 1,280
    text_encoder_3 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_3), d_model=t5_width, d_ff=64, d_kv=16, num_layers=2, num_heads=4,
            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        )
    )  # fmt: skip
    transformer = SD3Transformer2DModel(
        sample_size=32, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=t5_width, caption_projection_dim=32, pooled_projection_dim=64,
        pos_embed_max_size=32, dual_attention_layers=(0,), qk_norm="rms_norm",
    )  # fmt: skip
    return {
        "transformer": transformer,
        "vae": _tiny_vae(scaling_factor=1.5305, shift_factor=0.0609, latent_channels=16, use_quant_conv=False,
                         use_post_quant_conv=False),  # fmt: skip
        "text_encoder": _tiny_text_encoder(tokenizer, with_projection=True),
        "text_encoder_2": _tiny_text_encoder(tokenizer_2, with_projection=True),
        "text_encoder_3": text_encoder_3,
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
        "tokenizer_3": tokenizer_3,
        "image_encoder": None,
        "feature_extractor": None,
    }


# What the tiny DeepFloyd IF stages share: IF's UNet blocks (ResNet down/upsampling, simple
# cross-attention with group norm, scale-shift time conditioning, GELU) and a pooled text
# embedding added to the time embedding, from T5 states projected to the attention width.
TINY_IF_UNET = {
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "down_block_types": ("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
    "up_block_types": ("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
    "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
    "cross_attention_dim": 64,
    "attention_head_dim": 8,
    "addition_embed_type": "text",
    "addition_embed_type_num_heads": 2,
    "cross_attention_norm": "group_norm",
    "resnet_time_scale_shift": "scale_shift",
    "act_fn": "gelu",
    "norm_num_groups": 16,
}
# The tiny cascade's image sizes: stage I, stage II, and the upscaler's four times stage II
TINY_IF_SIZES = (8, 16, 64)


def if_scheduler(**config):
    """DeepFloyd IF's DDPM scheduler: cosine betas, dynamic thresholding, learned variance range."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True, clip_sample_range=1.0,
        thresholding=True, dynamic_thresholding_ratio=0.95, sample_max_value=1.5, **config,
    )  # fmt: skip


def _tiny_if_stages(dest: Path) -> dict[str, Any]:
    from diffusers import (
        DDIMScheduler,
        DDPMScheduler,
        IFPipeline,
        IFSuperResolutionPipeline,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

    write_t5_tokenizer(dest / "tokenizer")
    tokenizer = T5TokenizerFast.from_pretrained(dest / "tokenizer")
    t5_width = 32
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer), d_model=t5_width, d_ff=64, d_kv=8, num_layers=2, num_heads=4,
            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        )
    )  # fmt: skip
    first_size, second_size, _ = TINY_IF_SIZES
    no_checker = {"safety_checker": None, "feature_extractor": None, "watermarker": None}
    first = IFPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder,
        unet=UNet2DConditionModel(**TINY_IF_UNET, sample_size=first_size, in_channels=3, out_channels=6,
                                  encoder_hid_dim=t5_width),
        scheduler=if_scheduler(variance_type="learned_range"), requires_safety_checker=False, **no_checker,
    )  # fmt: skip
    second = IFSuperResolutionPipeline(
        tokenizer=None, text_encoder=None,
        unet=UNet2DConditionModel(**TINY_IF_UNET, sample_size=second_size, in_channels=6, out_channels=6,
                                  encoder_hid_dim=t5_width, class_embed_type="timestep"),
        scheduler=if_scheduler(variance_type="learned_range"),
        image_noising_scheduler=if_scheduler(variance_type="fixed_small"),
        requires_safety_checker=False, **no_checker,
    )  # fmt: skip
    write_clip_tokenizer(dest / "stage_3" / "tokenizer", pad_token="!")
    clip_tokenizer = CLIPTokenizer.from_pretrained(dest / "stage_3" / "tokenizer")
    third = StableDiffusionUpscalePipeline(
        vae=_tiny_vae(scaling_factor=0.08333, block_out_channels=(16, 16, 32),
                      down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3),
        text_encoder=_tiny_text_encoder(clip_tokenizer, with_projection=False), tokenizer=clip_tokenizer,
        unet=UNet2DConditionModel(**TINY_UNET | {"in_channels": 7, "sample_size": second_size},
                                  cross_attention_dim=32, attention_head_dim=8, norm_num_groups=16,
                                  num_class_embeds=1000),
        low_res_scheduler=DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear"),
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.0001, beta_end=0.02,
                                prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False,
                                steps_offset=1),
        max_noise_level=350, **no_checker,
    )  # fmt: skip
    return {"": first, "stage_2": second, "stage_3": third}


def build_tiny_if_cascade(dest: Path, seed: int) -> None:
    """Write a tiny random DeepFloyd IF cascade (8, 16 and 64 px) to `dest`: stage I's
    IFPipeline snapshot, with stage II's IFSuperResolutionPipeline in ``stage_2/`` and the
    StableDiffusionUpscalePipeline of stage III in ``stage_3/``; the weights are a function of `seed`."""
    dest.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    for folder, pipeline in _tiny_if_stages(dest).items():
        pipeline.save_pretrained(dest / folder, safe_serialization=True)


def build_tiny_pipeline(
    dest: Path, seed: int, scheduler: str = "pndm", architecture: str = "sd"
) -> dict[str, Any]:
    """Write a tiny random pipeline of `architecture` (64 px images) to `dest`; return its record.

    Same classes and file layout as a real SD 1.x, SDXL, AltDiffusion or SD 3.5
    checkpoint or DeepFloyd IF cascade (`build_tiny_if_cascade`, with IF's own schedulers),
    a few hundred thousand parameters besides the 49,408-token CLIP embeddings; the
    weights are a function of `seed`.
    """
    import diffusers

    spec = architecture_named(architecture)
    dest.mkdir(parents=True, exist_ok=True)
    if spec.name == "if":
        build_tiny_if_cascade(dest, seed)
    else:
        if spec.name != "alt":
            write_clip_tokenizer(dest / "tokenizer")
        torch.manual_seed(seed)
        components = {
            "sd": _tiny_sd_components,
            "sdxl": _tiny_sdxl_components,
            "alt": _tiny_alt_components,
            "sd3": _tiny_sd3_components,
        }[spec.name](dest)
        pipeline = getattr(diffusers, spec.pipeline_class)(**components, scheduler=tiny_scheduler(scheduler))
        pipeline.save_pretrained(dest, safe_serialization=True)
    if spec.name == "alt":  # the hub's layout: the sentencepiece model alone, converted when loaded
        (dest / "tokenizer" / "tokenizer.json").unlink()
        write_xlm_r_config(dest / "tokenizer")
    files = {
        str(path.relative_to(dest)): sha256_of(path)
        for path in sorted(dest.rglob("*"))
        if path.is_file()
    }
    return {
        "source": "tiny",
        "seed": seed,
        "commit": None,
        "files": files,
        **describe_snapshot(dest),
    }
