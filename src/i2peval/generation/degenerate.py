"""Images that mean nothing: detected per image so that no judge scores them silently.

A float16 SDXL VAE (and any model pushed past its range) can give NaN or infinite
latents or pixels, which decode to an all-black image; a collapsed model gives a
constant one. The reason is recorded in the manifest; the aggregate stage applies a
named policy to such images (metrics/degenerate.py).
"""

from __future__ import annotations

import numpy as np
import torch

NONFINITE_LATENTS = "non-finite latents"
NONFINITE_PIXELS = "non-finite decoded pixels"
BLACK = "all-black image"
CONSTANT = "constant image"


def degenerate_reason(latents: torch.Tensor, decoded: torch.Tensor, pixels: np.ndarray) -> str | None:
    """Why one image is degenerate, or None.

    `latents`: its final latents; `decoded`: the VAE output; `pixels`: the 8-bit image.
    """
    if not torch.isfinite(latents).all():
        return NONFINITE_LATENTS
    if not torch.isfinite(decoded).all():
        return NONFINITE_PIXELS
    if not pixels.any():
        return BLACK
    if (pixels == pixels.reshape(-1, pixels.shape[-1])[0]).all():
        return CONSTANT
    return None
