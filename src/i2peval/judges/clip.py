"""The CLIP model Q16 and CLIPScore share: loaded once per job, each image embedded once.

open_clip builds the architecture named in the Q16 record (OpenAI's ViT-L/14 with
QuickGELU for the study, a tiny one for the demo) from the verified safetensors file. The
text tower is kept only when CLIPScore runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from i2peval.judges.batch import ImageBatch


class ClipModel:
    """Unit-length CLIP embeddings of images and texts."""

    def __init__(self, architecture: str, weights_path: Path, device: torch.device, text: bool = False):
        import open_clip

        from i2peval.judges.q16 import register_demo_architecture

        register_demo_architecture()
        model, _, preprocess = open_clip.create_model_and_transforms(
            architecture, pretrained=str(weights_path), device=device
        )
        model.eval()
        self.visual = model.visual
        self.model = model if text else None
        self.tokenizer = open_clip.get_tokenizer(architecture) if text else None
        self.preprocess = preprocess
        self.device = device

    def image_embeddings(self, batch: ImageBatch) -> torch.Tensor:
        """(images, dim) float32, unit length; computed once per batch, whoever asks first."""
        return batch.memo("clip_image_embeddings", lambda: self._embed_images(batch.images))

    def _embed_images(self, images: list) -> torch.Tensor:
        import torch

        with torch.inference_mode():
            pixels = torch.stack([self.preprocess(image) for image in images]).to(self.device)
            return torch.nn.functional.normalize(self.visual(pixels).float(), dim=-1)

    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """(texts, dim) float32, unit length. open_clip's tokenizer cleans each text (ftfy,
        whitespace, lower case) and cuts it to 77 tokens, the end token kept."""
        import torch

        if self.model is None:
            raise RuntimeError("this CLIP model was loaded without its text tower")
        with torch.inference_mode():
            tokens = self.tokenizer(texts).to(self.device)
            return torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1)
