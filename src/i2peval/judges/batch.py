"""One decoded batch of a classify job's images, shared by every judge of the job.

Each PNG is decoded once; judges that need another form of the image (an RGB or BGR
array, a CLIP embedding) ask the batch, which computes it on first use and keeps it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from i2peval.generation.imagestore import decode_png


@dataclass
class ImageBatch:
    """Images of one batch (RGB PIL images) with their keys and the prompt text each was made from."""

    prompt_ids: list[int]
    image_indices: list[int]
    images: list[Image.Image]
    texts: list[str]
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def decode(
        cls,
        prompt_ids: list[int],
        image_indices: list[int],
        pngs: list[bytes],
        texts: list[str],
        container: Path,
        pool: Executor | None = None,
    ) -> ImageBatch:
        """Decode the PNG bytes read from `container` to RGB images (`imagestore.decode_png`),
        in `pool`'s threads where one is given (Pillow decodes without holding the GIL)."""
        containers = [container] * len(pngs)
        arguments = (pngs, containers, prompt_ids, image_indices)
        images = list(pool.map(decode_png, *arguments) if pool is not None else map(decode_png, *arguments))
        return cls(list(prompt_ids), list(image_indices), images, list(texts))

    def __len__(self) -> int:
        return len(self.images)

    def keys(self) -> list[tuple[int, int]]:
        return list(zip(self.prompt_ids, self.image_indices))

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` the first time `key` is asked for, the kept value after that."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def rgb(self) -> list[np.ndarray]:
        """(H, W, 3) uint8 RGB arrays."""
        return self.memo("rgb", lambda: [np.asarray(image) for image in self.images])

    def bgr(self) -> list[np.ndarray]:
        """(H, W, 3) uint8 BGR arrays, contiguous: what OpenCV's PNG decoder makes of the files."""
        return self.memo("bgr", lambda: [np.ascontiguousarray(rgb[:, :, ::-1]) for rgb in self.rgb()])
