"""The benchmarks' full-size random models are the published architectures: their UNets
have the published parameter counts and cost the FLOPs the throughput targets assume
(counted on the meta device: no weights are made)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "benchmarks"))

from full_size import unet_cost, vae_cost  # noqa: E402


@pytest.mark.parametrize(
    "architecture, resolution, parameters, tflop",
    [
        ("sd1", 512, 859_520_964, 0.80),  # CompVis/stable-diffusion-v1-4
        ("sdxl", 1024, 2_567_463_684, 6.76),  # stabilityai/stable-diffusion-xl-base-1.0
    ],
)
def test_full_size_unets_have_the_published_size_and_cost(architecture, resolution, parameters, tflop):
    found_parameters, found_tflop = unet_cost(architecture, resolution)
    assert found_parameters == parameters
    assert found_tflop == pytest.approx(tflop, abs=0.005)


def test_the_full_size_vae_decodes_512_px_for_2_5_tflop():
    parameters, tflop = vae_cost(512)
    assert parameters == 83_653_863
    assert tflop == pytest.approx(2.51, abs=0.01)
