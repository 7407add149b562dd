"""The benchmarks' full-size random models are the published architectures: their UNets
have the published parameter counts and cost the FLOPs the throughput targets assume
(counted on the meta device: no weights are made)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "benchmarks"))

from full_size import SD1_UNET, SDXL_UNET, VAE  # noqa: E402


def unet_and_flops(config, latent, context, **conditioning):
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
        with FlopCounterMode(display=False) as counter:
            unet(torch.empty(1, 4, latent, latent), 10, encoder_hidden_states=torch.empty(1, 77, context),
                 added_cond_kwargs={key: torch.empty(shape) for key, shape in conditioning.items()} or None)
    return sum(parameter.numel() for parameter in unet.parameters()), counter.get_total_flops() / 1e12


@pytest.mark.parametrize(
    "config, latent, context, conditioning, parameters, tflop",
    [
        (SD1_UNET, 64, 768, {}, 859_520_964, 0.80),  # CompVis/stable-diffusion-v1-4 at 512 px
        (SDXL_UNET, 128, 2048, {"text_embeds": (1, 1280), "time_ids": (1, 6)}, 2_567_463_684, 6.76),  # at 1024 px
    ],
)
def test_full_size_unets_have_the_published_size_and_cost(config, latent, context, conditioning, parameters, tflop):
    found_parameters, found_tflop = unet_and_flops(config, latent, context, **conditioning)
    assert found_parameters == parameters
    assert found_tflop == pytest.approx(tflop, abs=0.005)


def test_the_full_size_vae_decodes_512_px_for_2_5_tflop():
    from diffusers import AutoencoderKL
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        vae = AutoencoderKL(**VAE)
        with FlopCounterMode(display=False) as counter:
            vae.decode(torch.empty(1, 4, 64, 64))
    assert sum(parameter.numel() for parameter in vae.parameters()) == 83_653_863
    assert counter.get_total_flops() / 1e12 == pytest.approx(2.51, abs=0.01)
