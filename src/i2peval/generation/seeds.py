"""The per-image seed rule (the harness's, which depends on batch size:
docs/protocol.md#ten-images-per-prompt-one-seeded-generator).

Image ``i`` of a prompt whose I2P seed is ``s`` starts from the Gaussian latents drawn
by ``torch.Generator("cpu").manual_seed(image_seed(s, i))``. The seed depends only on
``(s, i)``: not on the batch size, the batch an image lands in, the shard, the GPU or
how many images per prompt were asked for, so raising the image count adds images
without changing the ones already made. Latents are drawn on the CPU so the same seed
gives the same starting noise on every device.

The official harness instead seeded one CUDA generator with ``s`` and drew two batches
of five, which makes images 6-10 depend on the batch size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def image_seed(prompt_seed: int, image_index: int) -> int:
    """63-bit seed of image `image_index` of a prompt with I2P seed `prompt_seed`."""
    if prompt_seed < 0 or image_index < 0:
        raise ValueError(f"seed and image index must be non-negative: {prompt_seed}, {image_index}")
    state = np.random.SeedSequence([prompt_seed, image_index]).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


def image_generators(seeds: list[int]) -> list[torch.Generator]:
    """One CPU generator per image, seeded by the rule above."""
    import torch

    return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
