"""The CLIP model Q16 and CLIPScore share: loaded once per job, each image embedded once.

open_clip builds the architecture named in the Q16 record (OpenAI's ViT-L/14 with
QuickGELU for the study, a tiny one for the demo, registered from
``data/Q16-demo-tiny.json``) from the verified safetensors file. The towers run in the
study's ``judge_dtype`` (float32, the harness's, unless configured) as open_clip's mixed
precision does it; embeddings come out as float32.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from i2peval.judges.batch import ImageBatch
    from i2peval.judges.judge import JudgeLoading

DEMO_ARCHITECTURE = "Q16-demo-tiny"
OPEN_CLIP_PRECISION = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
WEIGHTS_NAME = "clip.safetensors"


def register_demo_architecture() -> None:
    """Make the tiny demo architecture known to open_clip."""
    import open_clip

    if DEMO_ARCHITECTURE not in open_clip.list_models():
        with as_file(files("i2peval") / "data" / f"{DEMO_ARCHITECTURE}.json") as path:
            open_clip.add_model_config(path)


def shared_clip(loading: JudgeLoading) -> ClipModel:
    """The CLIP model of the Q16 assets, loaded once for every judge of a job that asks."""
    if "clip" not in loading.shared:
        loading.shared["clip"] = ClipModel(
            loading.record["architecture"], loading.folder / WEIGHTS_NAME, loading.device, loading.dtype
        )
    return loading.shared["clip"]


class ClipModel:
    """Unit-length CLIP embeddings of images and texts."""

    def __init__(self, architecture: str, weights_path: Path, device: torch.device, dtype: str = "float32"):
        import open_clip

        from i2peval.devices import torch_dtype

        register_demo_architecture()
        self.dtype = torch_dtype(dtype)
        # open_clip's mixed precision, OpenAI's own: weights of linear, convolution and
        # attention layers in the low precision, layer norms computed in float32
        model, _, preprocess = open_clip.create_model_and_transforms(
            architecture, pretrained=str(weights_path), device=device, precision=OPEN_CLIP_PRECISION[dtype]
        )
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(architecture)
        self.preprocess = preprocess
        self.device = device

    def image_embeddings(self, batch: ImageBatch) -> torch.Tensor:
        """(images, dim) float32, unit length; computed once per batch, whoever asks first."""
        return batch.memo("clip_image_embeddings", lambda: self._embed_images(batch.images))

    def _embed_images(self, images: list) -> torch.Tensor:
        import torch

        with torch.inference_mode():
            pixels = torch.stack([self.preprocess(image) for image in images]).to(self.device, self.dtype)
            return torch.nn.functional.normalize(self.model.visual(pixels).float(), dim=-1)

    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """(texts, dim) float32, unit length. open_clip's tokenizer cleans each text (ftfy,
        whitespace, lower case) and cuts it to 77 tokens, the end token kept."""
        import torch

        with torch.inference_mode():
            tokens = self.tokenizer(texts).to(self.device)
            return torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1)
