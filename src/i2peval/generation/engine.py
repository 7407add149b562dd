"""The one denoising loop for latent diffusion models, with guidance as a sum of terms.

`Engine.generate` makes one batch of images that may mix prompts. Image i starts from
latents drawn with its own CPU generator (seeds.py), every conditioning branch of
every image goes through the denoiser in one call per step, the guidance terms combine
the branches per image, and each image is decoded on its own, so an image does not
depend on what else is in its batch. The scheduler is a fresh copy of the snapshot's
own for every batch; the VAE output becomes pixels through diffusers' image processor.
Each image comes back with the reason it is degenerate, if it is (degenerate.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from i2peval.generation.degenerate import degenerate_reason
from i2peval.generation.guidance import PROMPT, UNCONDITIONAL, Branch, Guidance, guidance_for
from i2peval.generation.latent_models import Conditioning, LatentModel
from i2peval.generation.mitigations import Mitigation, guided_by_prompt
from i2peval.generation.seeds import image_generators
from i2peval.generation.text import TextOptions


@dataclass(frozen=True)
class GeneratedImage:
    """One RGB image and why it is degenerate (None when it is not)."""

    image: Image.Image
    degenerate: str | None


# The classifier-free scale an engine that guides each image by its own scale builds its
# guidance with: any scale above 1, so that every branch is evaluated.
PROMPT_GUIDANCE_BRANCHES = 2.0


def starting_noise(shape: Sequence[int], generators: Sequence[torch.Generator], model: LatentModel) -> torch.Tensor:
    """Standard normal noise of `shape`, row i drawn on the CPU from `generators[i]` (seeds.py)."""
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor(tuple(shape), generator=list(generators), device=model.device, dtype=model.dtype)


def concat(conditionings: Sequence[Conditioning]) -> Conditioning:
    return {key: torch.cat([conditioning[key] for conditioning in conditionings]) for key in conditionings[0]}


def select(conditioning: Conditioning, rows: Sequence[int]) -> Conditioning:
    index = torch.tensor(rows, device=next(iter(conditioning.values())).device)
    return {key: value.index_select(0, index) for key, value in conditioning.items()}


class Engine:
    """A loaded model, the guidance of one mitigation and the text options, ready to generate."""

    def __init__(
        self, model: LatentModel, guidance: Guidance, text_options: TextOptions, prompt_guidance: bool = False
    ):
        self.model = model
        self.guidance = guidance
        self.text_options = text_options
        self.prompt_guidance = prompt_guidance  # each image guided by its own scale (`generate`'s guidance_scales)
        self._shared: dict[Branch, Conditioning] = {}

    @classmethod
    def for_mitigation(
        cls,
        model: LatentModel,
        mitigation: Mitigation,
        guidance_scale: float,
        cleaning: str = "ftfy",
        guidance: str | None = None,
    ) -> Engine:
        """The engine that makes `mitigation`'s images with `model`, by the rules of its
        architecture and the model's `guidance` (`mitigations.settings_on`,
        `Architecture.prompt_cleaning`)."""
        architecture = model.architecture
        made_with = mitigation.settings_on(architecture, guidance)
        prompt_guidance = guided_by_prompt(made_with)
        return cls(
            model,
            # every branch, whatever each image's own scale turns out to be
            guidance_for(mitigation, PROMPT_GUIDANCE_BRANCHES if prompt_guidance else guidance_scale, architecture),
            TextOptions(cleaning=architecture.prompt_cleaning(cleaning), long_prompts=made_with["long_prompts"]),
            prompt_guidance,
        )

    def branch_conditioning(self, branch: Branch, prompts: Sequence[str]) -> Conditioning:
        """Conditioning of `branch` for each image of a batch."""
        if branch == PROMPT:
            unique = list(dict.fromkeys(prompts))
            encoded = self.model.encode(unique, self.text_options)
            return select(encoded, [unique.index(prompt) for prompt in prompts])
        if branch not in self._shared:
            self._shared[branch] = self.model.encode(
                [None if branch == UNCONDITIONAL else branch.text], self.text_options
            )
        return select(self._shared[branch], [0] * len(prompts))

    def _step_arguments(self, scheduler, generators) -> dict:
        accepted = set(inspect.signature(scheduler.step).parameters)
        arguments = {}
        if "eta" in accepted:
            arguments["eta"] = 0.0
        if "generator" in accepted:
            arguments["generator"] = generators
        return arguments

    def generate(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        height: int,
        width: int,
        steps: int,
        guidance_scales: Sequence[float] | None = None,
    ) -> list[GeneratedImage]:
        """Images of `prompts[i]` from the latents of `seeds[i]` (guided by `guidance_scales[i]`
        where the engine guides each image by its prompt's scale)."""
        return self.decode(self.denoise(prompts, seeds, height, width, steps, guidance_scales))

    def denoise(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        height: int,
        width: int,
        steps: int,
        guidance_scales: Sequence[float] | None = None,
    ) -> torch.Tensor:
        """Final latents of `prompts[i]` from the starting noise of `seeds[i]`."""
        generators = image_generators(list(seeds))
        noise = starting_noise((len(prompts), *self.model.latent_shape(height, width)), generators, self.model)
        return self.run(prompts, generators, noise, steps, guidance_scales)

    @torch.inference_mode()
    def run(
        self,
        prompts: Sequence[str],
        generators: Sequence[torch.Generator],
        noise: torch.Tensor,
        steps: int,
        guidance_scales: Sequence[float] | None = None,
        conditionings: Mapping[Branch, Conditioning] | None = None,
        image_conditioning: Conditioning | None = None,
    ) -> torch.Tensor:
        """The denoising loop: final latents of `prompts[i]` from standard normal `noise[i]`,
        whose image draws any further randomness (a stochastic scheduler's) from `generators[i]`.

        `conditionings` gives the text conditioning of some branches already encoded (a
        cascade's later stage reuses its first stage's); `image_conditioning` is what each
        image's denoiser call gets besides its text, the same under every branch (a
        super-resolution stage's noised low-resolution image). A denoiser that predicts a
        learned variance besides the noise (twice the latent channels) is guided on the
        noise alone; the variance of the prompt's branch goes to the scheduler, as
        diffusers' DeepFloyd IF pipelines do.
        """
        if self.prompt_guidance != (guidance_scales is not None):
            raise ValueError(
                "this engine guides each image by its prompt's scale: give guidance_scales"
                if self.prompt_guidance
                else "this engine guides every image by the model's scale: give no guidance_scales"
            )
        model, branches = self.model, self.guidance.branches
        scales = None if guidance_scales is None else torch.tensor(guidance_scales, device=model.device)
        conditionings = conditionings or {}
        parts = [conditionings.get(branch) or self.branch_conditioning(branch, prompts) for branch in branches]
        if image_conditioning is not None:
            parts = [part | image_conditioning for part in parts]
        conditioning = concat(parts)
        scheduler = type(model.scheduler).from_config(model.scheduler.config)
        model.set_timesteps(scheduler, steps, noise.shape)
        # flow matching schedulers neither scale the noise nor the model input
        latents = noise * getattr(scheduler, "init_noise_sigma", 1.0)
        scale_input = getattr(scheduler, "scale_model_input", lambda sample, timestep: sample)
        learned_variance = scheduler.config.get("variance_type") in ("learned", "learned_range")
        step_arguments = self._step_arguments(scheduler, list(generators))
        states = self.guidance.start()
        for step, timestep in enumerate(scheduler.timesteps):
            model_input = scale_input(torch.cat([latents] * len(branches)), timestep)
            output = model.predict(model_input, timestep, conditioning)
            predictions = dict(zip(branches, output.chunk(len(branches))))
            variance = None
            if output.shape[1] == 2 * latents.shape[1]:
                variance = predictions[PROMPT][:, latents.shape[1] :]
                predictions = {branch: value[:, : latents.shape[1]] for branch, value in predictions.items()}
            guided = self.guidance.combine(predictions, step, states, scales)
            if variance is not None and learned_variance:
                guided = torch.cat([guided, variance], dim=1)
            latents = scheduler.step(guided, timestep, latents, **step_arguments, return_dict=False)[0]
        return latents

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> list[GeneratedImage]:
        """The image of each row of `latents`, decoded one by one, and why it is degenerate."""
        processor, images = self.model.image_processor, []
        for row in latents.split(1):
            decoded = self.model.decode(row)
            floats = processor.postprocess(torch.nan_to_num(decoded, nan=-1.0), output_type="np")
            image = processor.numpy_to_pil(floats)[0]
            images.append(GeneratedImage(image, degenerate_reason(row, decoded, np.asarray(image))))
        return images
