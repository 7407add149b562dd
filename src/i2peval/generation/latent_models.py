"""The latent diffusion models the engine drives: what differs between architectures inside the loop.

A `LatentModel` loads a snapshot with its diffusers pipeline class (offline,
safetensors only, no safety checker, no watermark) and offers the engine five things:
text conditioning for a list of texts, the scheduler's timesteps, one denoiser call,
the latent shape of an image, and the VAE decode. Everything else (scheduler steps,
seeds, guidance) is the same loop for every architecture. Conditioning is a dict of batch-first tensors, so the
engine can concatenate and repeat it without knowing what is inside.

- Stable Diffusion 1.x/2.x: one CLIP text encoder, its last hidden state; the
  unconditional branch is the encoded empty text.
- SDXL: two CLIP text encoders, the penultimate hidden states of both side by side,
  the second encoder's pooled projection, and size conditioning (time ids: original
  size, crop origin, target size); the unconditional branch is zeros when the snapshot
  says ``force_zeros_for_empty_prompt``; the VAE decodes in float32 when it is float16
  and its config says ``force_upcast`` (diffusers does the same, fp16 SDXL VAEs overflow).
- SD 3/3.5: a transformer (MMDiT) predicting the flow's velocity. Two CLIP encoders'
  penultimate hidden states side by side, zero-padded to the T5 width and followed by
  T5's last hidden state along the sequence (77 + 256 positions); both CLIP pooled
  projections side by side; the unconditional branch is the encoded empty text; the
  VAE's latents are shifted as well as scaled. A long prompt keeps its first 75 CLIP
  tokens (start and end tokens around them) and its first 255 T5 tokens (and T5's end
  token), as StableDiffusion3Pipeline's defaults do.

The text encoding mirrors each pipeline's ``encode_prompt`` from token ids computed by
`text.token_ids`, because the harness's SEGA runs need ids that ``encode_prompt`` cannot
make (tests compare both with diffusers' own encoding).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from i2peval.execution import SpeedOptions
from i2peval.generation.text import TextOptions, token_ids
from i2peval.models.architectures import Architecture, load_pipeline
from i2peval.models.overrides import COMPONENTS, apply_override

log = logging.getLogger(__name__)

Conditioning = dict[str, torch.Tensor]


class LatentModel(ABC):
    """Components of one loaded pipeline, and what the loop asks of them."""

    def __init__(self, pipeline, architecture: Architecture):
        self.architecture = architecture
        self.denoiser = getattr(pipeline, architecture.denoiser)
        self.vae = getattr(pipeline, "vae", None)  # None: the model denoises pixels (DeepFloyd IF)
        self.scheduler = pipeline.scheduler
        self.image_processor = getattr(pipeline, "image_processor", None)
        self.vae_scale_factor = getattr(pipeline, "vae_scale_factor", 1)
        self.tokenizers = [getattr(pipeline, tokenizer) for tokenizer, _ in architecture.text_folders]
        self.text_encoders = [getattr(pipeline, encoder) for _, encoder in architecture.text_folders]
        self.device = self.denoiser.device
        self.dtype = self.denoiser.dtype

    def speed_up(self, options: SpeedOptions) -> None:
        """Run the denoiser and the VAE the faster ways `options` names (`SpeedOptions`)."""
        if options.fuse_qkv:
            if self.vae is not None:
                self.vae.fuse_qkv_projections()
            if self.architecture.fusable_qkv:
                self.denoiser.fuse_qkv_projections()
            else:
                log.warning("fuse_qkv: %s's denoiser keeps separate projections (not fusable)", self.architecture.name)
        if options.channels_last:
            for module in (self.denoiser, self.vae):
                if module is not None:
                    module.to(memory_format=torch.channels_last)
        if options.compile_denoiser:
            self.denoiser = torch.compile(self.denoiser)

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        return (
            self.denoiser.config.in_channels,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )

    @abstractmethod
    def encode(self, texts: Sequence[str | None], options: TextOptions) -> Conditioning:
        """Conditioning of each text, batch first; None is the unconditional branch."""

    def set_timesteps(self, scheduler, steps: int, latent_shape: Sequence[int]) -> None:
        """Set `scheduler`'s timesteps for `steps` steps on latents of `latent_shape`."""
        scheduler.set_timesteps(steps, device=self.device)

    def predict(self, latents: torch.Tensor, timestep, conditioning: Conditioning) -> torch.Tensor:
        """The denoiser's output for scaled model input `latents`."""
        return self.denoiser(
            latents, timestep, encoder_hidden_states=conditioning["encoder_hidden_states"], return_dict=False
        )[0]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (float, NCHW) from final latents."""
        latents = latents / self.vae.config.scaling_factor
        return self.vae.decode(latents.to(self.vae.dtype), return_dict=False)[0]

    def _ids(self, tokenizer, texts: Sequence[str], options: TextOptions, length: int | None = None):
        rows = [token_ids(tokenizer, text, options, length) for text in texts]
        ids = torch.tensor([row[0] for row in rows], device=self.device)
        mask = torch.tensor([row[1] for row in rows], device=self.device)
        return ids, mask


class StableDiffusion(LatentModel):
    """Stable Diffusion 1.x/2.x (StableDiffusionPipeline)."""

    def encode(self, texts, options):
        (tokenizer,), (encoder,) = self.tokenizers, self.text_encoders
        ids, mask = self._ids(tokenizer, ["" if text is None else text for text in texts], options)
        uses_mask = getattr(encoder.config, "use_attention_mask", False)
        hidden = encoder(ids, attention_mask=mask if uses_mask else None)[0]
        return {"encoder_hidden_states": hidden.to(encoder.dtype)}


class StableDiffusionXL(LatentModel):
    """Stable Diffusion XL (StableDiffusionXLPipeline)."""

    def __init__(self, pipeline, architecture: Architecture):
        super().__init__(pipeline, architecture)
        self.zeros_for_unconditional = bool(pipeline.config.force_zeros_for_empty_prompt)
        if architecture.upcast_vae and self.vae.dtype == torch.float16 and self.vae.config.force_upcast:
            self.vae.to(torch.float32)

    def encode(self, texts, options):
        hidden_states, pooled = [], None
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders):
            ids, _ = self._ids(tokenizer, ["" if text is None else text for text in texts], options)
            output = encoder(ids, output_hidden_states=True)
            if output[0].ndim == 2:
                pooled = output[0]
            hidden_states.append(output.hidden_states[-2])
        dtype = self.text_encoders[-1].dtype
        hidden = torch.concat(hidden_states, dim=-1).to(dtype)
        pooled = pooled.to(dtype)
        if self.zeros_for_unconditional:
            unconditional = torch.tensor([text is None for text in texts], device=hidden.device)
            hidden = torch.where(unconditional[:, None, None], torch.zeros_like(hidden), hidden)
            pooled = torch.where(unconditional[:, None], torch.zeros_like(pooled), pooled)
        return {"encoder_hidden_states": hidden, "text_embeds": pooled}

    def predict(self, latents, timestep, conditioning):
        height, width = (size * self.vae_scale_factor for size in latents.shape[-2:])
        # original size, crop top-left, target size: what StableDiffusionXLPipeline passes by default
        time_ids = torch.tensor(
            [[height, width, 0, 0, height, width]], dtype=conditioning["encoder_hidden_states"].dtype
        ).to(latents.device)
        return self.denoiser(
            latents,
            timestep,
            encoder_hidden_states=conditioning["encoder_hidden_states"],
            added_cond_kwargs={
                "text_embeds": conditioning["text_embeds"],
                "time_ids": time_ids.repeat(latents.shape[0], 1),
            },
            return_dict=False,
        )[0]

    def decode(self, latents):
        config = self.vae.config
        if getattr(config, "latents_mean", None) is not None and getattr(config, "latents_std", None) is not None:
            mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            std = torch.tensor(config.latents_std).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            latents = latents * std / config.scaling_factor + mean
        else:
            latents = latents / config.scaling_factor
        return self.vae.decode(latents.to(self.vae.dtype), return_dict=False)[0]


class StableDiffusion3(LatentModel):
    """Stable Diffusion 3/3.5 (StableDiffusion3Pipeline)."""

    T5_POSITIONS = 256  # StableDiffusion3Pipeline's max_sequence_length

    def encode(self, texts, options):
        texts = ["" if text is None else text for text in texts]
        clip_hidden, pooled = [], []
        for tokenizer, encoder in zip(self.tokenizers[:2], self.text_encoders[:2]):
            ids, _ = self._ids(tokenizer, texts, options)
            output = encoder(ids, output_hidden_states=True)
            pooled.append(output[0])
            clip_hidden.append(output.hidden_states[-2].to(self.text_encoders[0].dtype))
        rows = [token_ids(self.tokenizers[2], text, options, self.T5_POSITIONS)[0] for text in texts]
        t5 = self.text_encoders[2](torch.tensor(rows, device=self.device))[0].to(self.text_encoders[2].dtype)
        clip = torch.concat(clip_hidden, dim=-1)
        clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
        hidden = torch.concat([clip, t5], dim=-2)
        return {"encoder_hidden_states": hidden, "pooled_projections": torch.concat(pooled, dim=-1)}

    def set_timesteps(self, scheduler, steps, latent_shape):
        config = scheduler.config
        shift = {}
        if config.get("use_dynamic_shifting"):
            from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

            patch = self.denoiser.config.patch_size
            shift["mu"] = calculate_shift(
                (latent_shape[-2] // patch) * (latent_shape[-1] // patch),
                config.get("base_image_seq_len", 256),
                config.get("max_image_seq_len", 4096),
                config.get("base_shift", 0.5),
                config.get("max_shift", 1.16),
            )
        scheduler.set_timesteps(steps, device=self.device, **shift)

    def predict(self, latents, timestep, conditioning):
        return self.denoiser(
            hidden_states=latents,
            timestep=timestep.expand(latents.shape[0]),
            encoder_hidden_states=conditioning["encoder_hidden_states"],
            pooled_projections=conditioning["pooled_projections"],
            return_dict=False,
        )[0]

    def decode(self, latents):
        config = self.vae.config
        latents = latents / config.scaling_factor + config.shift_factor
        return self.vae.decode(latents.to(self.vae.dtype), return_dict=False)[0]


# AltDiffusion conditions its UNet as Stable Diffusion does, on its text encoder's
# first output (XLM-R's projected last hidden state) under the attention mask
ADAPTERS = {"sd": StableDiffusion, "sdxl": StableDiffusionXL, "alt": StableDiffusion, "sd3": StableDiffusion3}


def load_latent_model(
    snapshot: Path, dtype: torch.dtype, device: torch.device, record: dict[str, Any] | None = None
) -> LatentModel:
    """Load a snapshot (its architecture read from model_index.json) onto `device`, with
    the weight overrides its model `record` describes, if any (models/overrides.py, models/lora.py)."""
    pipeline, architecture = load_pipeline(snapshot, dtype)
    record = record or {}
    for component in COMPONENTS.values():
        if component.record_key in record:
            apply_override(getattr(pipeline, component.name), component, snapshot, record[component.record_key])
    if "lora" in record:
        from i2peval.models.lora import apply_loras

        apply_loras(pipeline, snapshot, record["lora"])
    return ADAPTERS[architecture.name](pipeline.to(device), architecture)
