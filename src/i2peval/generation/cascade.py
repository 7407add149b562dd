"""DeepFloyd IF as the harness ran it: a cascade of three diffusion models on the one loop.

- Stage I (IF-I-XL, an ``IFPipeline`` snapshot) denoises 64 px images in pixel space,
  conditioned on T5 embeddings of the lowercased, stripped prompt (77 positions,
  truncated, with the attention mask), at each prompt's guidance scale, under the
  mitigation's guidance.
- Stage II (IF-II-L, ``IFSuperResolutionPipeline``) denoises 256 px images conditioned on
  stage I's images, upsampled bilinearly (corners aligned) and noised at noise level 250,
  and on the same T5 embeddings (the harness encoded each prompt once for both stages),
  for its default 50 steps, with classifier-free guidance at the prompt's scale whose
  negative branch is the mitigation's (the concept for the negative prompt, else the
  empty text): SEGA and SLD act in stage I only.
- Stage III (``StableDiffusionUpscalePipeline``, stabilityai/stable-diffusion-x4-upscaler)
  denoises latents of the 1024 px image conditioned on stage II's images noised at
  level 100 and on the plain prompt through its own CLIP encoder, at its defaults (75
  steps, guidance 9, empty unconditional text), whatever the mitigation. Its CLIP text is
  cleaned as ``generation.prompt_cleaning`` says (the harness's CLIP tokenizers used ftfy);
  T5's is only lowercased and stripped, as ``IFPipeline.encode_prompt`` does.

IF-I and IF-II predict a variance besides the noise: guidance acts on the noise and the
prompt branch's variance goes to the DDPM scheduler (engine.py). Each image's own
generator (seeds.py) runs through all three stages, drawing in the order diffusers'
pipelines draw: stage I's starting noise, then its scheduler's noise at every step;
stage II's starting noise, the noise of the upsampled image, its steps' noise; stage III's
noise of the low-resolution image, then its starting latents. So an image does not depend
on its batch, and with the same generators the stages equal diffusers' pipelines
(tests/test_deepfloyd_if.py).

Stage II's output goes to the upscaler as the tensor it is (in [-1, 1]), as the harness's
diffusers did; diffusers 0.42's upscaler would rescale a tensor with no negative value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from i2peval.execution import SpeedOptions
from i2peval.generation.engine import Engine, GeneratedImage, starting_noise
from i2peval.generation.guidance import ClassifierFree, Guidance
from i2peval.generation.latent_models import LatentModel, StableDiffusion
from i2peval.generation.mitigations import Mitigation
from i2peval.generation.seeds import image_generators
from i2peval.generation.text import TextOptions
from i2peval.models.architectures import DEEPFLOYD_IF, IF_SUPER_RESOLUTION, X4_UPSCALER

T5_POSITIONS = 77  # IFPipeline.encode_prompt's max_length
STAGE_TWO_STEPS = IF_SUPER_RESOLUTION.steps
STAGE_TWO_NOISE_LEVEL = 250  # IFSuperResolutionPipeline's default
UPSCALER_STEPS = X4_UPSCALER.steps
UPSCALER_GUIDANCE = X4_UPSCALER.guidance_scale
UPSCALER_NOISE_LEVEL = 100  # the harness's argument
STAGE_FOLDERS = tuple(folder for folder, _ in DEEPFLOYD_IF.cascade)  # stage II and III inside stage I's snapshot


class IFStageOne(LatentModel):
    """IF-I: pixels from T5 embeddings."""

    def latent_shape(self, height, width):
        size = self.denoiser.config.sample_size
        return (self.denoiser.config.in_channels, size, size)

    def encode(self, texts, options):
        (tokenizer,), (encoder,) = self.tokenizers, self.text_encoders
        lowered = ["" if text is None else text.lower().strip() for text in texts]
        ids, mask = self._ids(tokenizer, lowered, options, T5_POSITIONS)
        return {"encoder_hidden_states": encoder(ids, attention_mask=mask)[0].to(encoder.dtype)}


class ImageConditioned(LatentModel):
    """A super-resolution stage: its denoiser sees the low-resolution image, brought to its
    input's size (`low_resolution`) and noised at `noise_level` by `noising_scheduler`, beside
    its input's channels, and the noise level as its class label."""

    noise_level: int
    noising_scheduler: Any

    def low_resolution(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.dtype)

    def conditioning(self, images: torch.Tensor, generators: Sequence[torch.Generator]) -> dict[str, torch.Tensor]:
        """The image conditioning of the previous stage's `images`, drawing the noise from `generators`."""
        images = self.low_resolution(images)
        levels = torch.full((len(images),), self.noise_level, device=self.device)
        noise = starting_noise(images.shape, generators, self)
        return {"image": self.noising_scheduler.add_noise(images, noise, levels), "class_labels": levels}

    def predict(self, latents, timestep, conditioning):
        return self.denoiser(
            torch.cat([latents, conditioning["image"]], dim=1),
            timestep,
            encoder_hidden_states=conditioning["encoder_hidden_states"],
            class_labels=conditioning["class_labels"],
            return_dict=False,
        )[0]


class IFSuperResolution(ImageConditioned):
    """IF-II: pixels from stage I's pixels, upsampled and noised, and stage I's T5 embeddings."""

    noise_level = STAGE_TWO_NOISE_LEVEL

    def __init__(self, pipeline):
        super().__init__(pipeline, IF_SUPER_RESOLUTION)
        self.noising_scheduler = pipeline.image_noising_scheduler

    def latent_shape(self, height, width):
        size = self.denoiser.config.sample_size
        return (self.denoiser.config.in_channels // 2, size, size)

    def encode(self, texts, options):
        raise TypeError("IF-II has no text encoder: give it stage I's conditioning")

    def low_resolution(self, images):
        size = self.denoiser.config.sample_size
        return torch.nn.functional.interpolate(images.to(self.dtype), (size, size), mode="bilinear", align_corners=True)


class Upscaler(ImageConditioned, StableDiffusion):
    """The x4 upscaler: VAE latents of four times the size from noised low-resolution pixels and CLIP text."""

    noise_level = UPSCALER_NOISE_LEVEL

    def __init__(self, pipeline):
        super().__init__(pipeline, X4_UPSCALER)
        self.noising_scheduler = pipeline.low_res_scheduler
        # decoded in float32, as diffusers decodes with an fp16 VAE whose config says force_upcast
        if X4_UPSCALER.upcast_vae and self.vae.dtype == torch.float16 and self.vae.config.force_upcast:
            self.vae.to(torch.float32)

    def decode(self, latents):
        return self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor, return_dict=False)[0]


@dataclasses.dataclass(frozen=True)
class IFStages:
    """The three loaded models of one DeepFloyd IF cascade."""

    first: IFStageOne
    second: IFSuperResolution
    upscaler: Upscaler

    def speed_up(self, options: SpeedOptions) -> None:
        """Run every stage the faster ways `options` names (`LatentModel.speed_up`)."""
        for stage in (self.first, self.second, self.upscaler):
            stage.speed_up(options)


def load_if_stages(snapshot: Path, dtype: torch.dtype, device: torch.device) -> IFStages:
    """The cascade of a local snapshot: stage I at its root, stages II and III in `STAGE_FOLDERS`
    (safetensors only, no safety checker or watermarker), on `device`."""
    from diffusers import IFPipeline, IFSuperResolutionPipeline, StableDiffusionUpscalePipeline

    weights = {"dtype": dtype, "use_safetensors": True, "local_files_only": True}
    no_checker = {"safety_checker": None, "feature_extractor": None, "watermarker": None}
    first = IFPipeline.from_pretrained(snapshot, **weights, **no_checker, requires_safety_checker=False)
    second = IFSuperResolutionPipeline.from_pretrained(
        Path(snapshot) / STAGE_FOLDERS[0], **weights, **no_checker, tokenizer=None, text_encoder=None,
        requires_safety_checker=False,
    )  # fmt: skip
    third = StableDiffusionUpscalePipeline.from_pretrained(Path(snapshot) / STAGE_FOLDERS[1], **weights, **no_checker)
    for pipeline in (first, second, third):
        pipeline.set_progress_bar_config(disable=True)
    return IFStages(
        IFStageOne(first.to(device), DEEPFLOYD_IF), IFSuperResolution(second.to(device)), Upscaler(third.to(device))
    )


class IFCascade:
    """One mitigation's images from a DeepFloyd IF cascade, with `Engine`'s interface."""

    def __init__(
        self,
        stages: IFStages,
        mitigation: Mitigation,
        guidance_scale: float,
        cleaning: str = "ftfy",
        guidance: str | None = None,
    ):
        # T5's text is never cleaned; the upscaler's CLIP text is, as `cleaning` says
        self.first = Engine.for_mitigation(stages.first, mitigation, guidance_scale, "none", guidance)
        self.prompt_guidance = self.first.prompt_guidance
        self.second = Engine(
            stages.second, Guidance(self.first.guidance.classifier_free), self.first.text_options, self.prompt_guidance
        )
        self.upscaler = Engine(
            stages.upscaler,
            Guidance(ClassifierFree(UPSCALER_GUIDANCE)),
            TextOptions(cleaning=cleaning),
        )

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        height: int,
        width: int,
        steps: int,
        guidance_scales: Sequence[float] | None = None,
    ) -> list[GeneratedImage]:
        """1024 px images (the stages' sizes; `height` and `width` must be the upscaler's) of
        `prompts[i]` from `seeds[i]`, stage I run for `steps` steps."""
        first, second, upscaler = self.first.model, self.second.model, self.upscaler.model
        size = 4 * second.denoiser.config.sample_size
        if (height, width) != (size, size):
            raise ValueError(f"this DeepFloyd IF cascade makes {size} x {size} images, not {height} x {width}")
        generators = image_generators(list(seeds))
        conditionings = {
            branch: self.first.branch_conditioning(branch, prompts) for branch in self.first.guidance.branches
        }
        noise = starting_noise((len(prompts), *first.latent_shape(height, width)), generators, first)
        images = self.first.run(prompts, generators, noise, steps, guidance_scales, conditionings)
        noise = starting_noise((len(prompts), *second.latent_shape(height, width)), generators, second)
        images = self.second.run(
            prompts, generators, noise, STAGE_TWO_STEPS, guidance_scales, conditionings,
            second.conditioning(images, generators),
        )  # fmt: skip
        low_resolution = upscaler.conditioning(images, generators)
        noise = starting_noise(
            (len(prompts), upscaler.vae.config.latent_channels, *images.shape[-2:]), generators, upscaler
        )
        latents = self.upscaler.run(prompts, generators, noise, UPSCALER_STEPS, image_conditioning=low_resolution)
        return self.upscaler.decode(latents)
