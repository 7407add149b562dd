"""Full-size Stable Diffusion 1.x and SDXL pipelines with random weights, for benchmarks.

Built from the published configurations (CompVis/stable-diffusion-v1-4 and
stabilityai/stable-diffusion-xl-base-1.0: the UNets, VAEs and CLIP text encoders, their
schedulers), so they cost what the real models cost, with no download. Their images are
noise: time, memory and FLOPs are what they are for.
"""

from __future__ import annotations

from pathlib import Path

import torch

from i2peval.models.tiny import tiny_scheduler, write_clip_tokenizer

# UNet2DConditionModel arguments; the rest are diffusers' defaults, which are SD 1.x's
SD1_UNET = {
    "sample_size": 64,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
}
SDXL_UNET = {
    "sample_size": 128,
    "block_out_channels": (320, 640, 1280),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "layers_per_block": 2,
}
VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "layers_per_block": 2,
}
SD2_UNET = {**SD1_UNET, "sample_size": 96, "cross_attention_dim": 1024, "attention_head_dim": (5, 10, 20, 20),
            "use_linear_projection": True}
# each UNet's configuration, text width and added conditioning (name -> shape)
UNETS = {
    "sd1": (SD1_UNET, 768, {}),
    "sd2": (SD2_UNET, 1024, {}),
    "sdxl": (SDXL_UNET, 2048, {"text_embeds": (1, 1280), "time_ids": (1, 6)}),
}
CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
          "hidden_act": "quick_gelu", "projection_dim": 768}
CLIP_BIG_G = {"hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 20, "num_hidden_layers": 32,
              "hidden_act": "gelu", "projection_dim": 1280}


def unet_cost(architecture: str, resolution: int) -> tuple[int, float]:
    """Parameters and TFLOP of one pass of `architecture`'s UNet (of `UNETS`) for one image
    at `resolution`, counted on the meta device: no weights are made."""
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    config, context, conditioning = UNETS[architecture]
    latent = resolution // 8
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
        with FlopCounterMode(display=False) as counter:
            unet(torch.empty(1, 4, latent, latent), 10, encoder_hidden_states=torch.empty(1, 77, context),
                 added_cond_kwargs={key: torch.empty(shape) for key, shape in conditioning.items()} or None)
    return sum(parameter.numel() for parameter in unet.parameters()), counter.get_total_flops() / 1e12


def vae_cost(resolution: int) -> tuple[int, float]:
    """Parameters and TFLOP of the VAE decoding one image at `resolution`, on the meta device."""
    from diffusers import AutoencoderKL
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        vae = AutoencoderKL(**VAE)
        with FlopCounterMode(display=False) as counter:
            vae.decode(torch.empty(1, 4, resolution // 8, resolution // 8))
    return sum(parameter.numel() for parameter in vae.parameters()), counter.get_total_flops() / 1e12


def text_encoder(tokenizer, config: dict, with_projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    clip = CLIPTextConfig(
        vocab_size=len(tokenizer), max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **config,
    )
    return CLIPTextModelWithProjection(clip) if with_projection else CLIPTextModel(clip)


def build_full_size(dest: Path, architecture: str, seed: int = 0) -> Path:
    """Write a random full-size `architecture` ("sd1" or "sdxl") snapshot to `dest`."""
    import diffusers
    from transformers import CLIPTokenizer

    torch.manual_seed(seed)
    write_clip_tokenizer(dest / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(dest / "tokenizer")
    if architecture == "sd1":
        pipeline = diffusers.StableDiffusionPipeline(
            unet=diffusers.UNet2DConditionModel(**SD1_UNET),
            vae=diffusers.AutoencoderKL(**VAE, sample_size=512, scaling_factor=0.18215),
            text_encoder=text_encoder(tokenizer, CLIP_L, with_projection=False),
            tokenizer=tokenizer,
            scheduler=tiny_scheduler("pndm"),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    elif architecture == "sdxl":
        write_clip_tokenizer(dest / "tokenizer_2", pad_token="!")
        tokenizer_2 = CLIPTokenizer.from_pretrained(dest / "tokenizer_2")
        pipeline = diffusers.StableDiffusionXLPipeline(
            unet=diffusers.UNet2DConditionModel(**SDXL_UNET),
            vae=diffusers.AutoencoderKL(**VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True),
            text_encoder=text_encoder(tokenizer, CLIP_L, with_projection=False),
            text_encoder_2=text_encoder(tokenizer_2, CLIP_BIG_G, with_projection=True),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            scheduler=tiny_scheduler("euler"),
            add_watermarker=False,
        )
    else:
        raise ValueError(f"architecture {architecture!r} is not sd1 or sdxl")
    pipeline.save_pretrained(dest, safe_serialization=True)
    return dest
