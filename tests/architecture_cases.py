"""What the engine tests of every architecture share: the four mitigation kinds at their
strongest presets, and the pixels of generated images."""

from __future__ import annotations

import numpy as np

MITIGATIONS = {
    "none": {"kind": "none"},
    "negative_prompt": {"kind": "negative_prompt"},
    "sega": {"kind": "sega", "preset": "max"},
    "sld": {"kind": "sld", "preset": "max"},
}


def pixels(images):
    """int pixels of generated images (or of PIL images), stacked."""
    return np.stack([np.asarray(getattr(image, "image", image)) for image in images]).astype(int)
