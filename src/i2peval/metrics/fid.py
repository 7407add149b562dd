"""FID: how far each condition's images of a prompt set lie from a folder of reference images
(COCO's, for COCO-30k captions), in the Inception-v3 features of the FID literature.

- Features: torch-fidelity's ``FeatureExtractorInceptionV3``, the TensorFlow FID Inception
  graph ported to PyTorch (2048-d pool features; every image resized to 299 x 299 as
  TensorFlow 1.x's bilinear resize did), on the uint8 pixels as saved.
- Weights: torch-fidelity's release of that graph's weights,
  ``weights-inception-2015-12-05-6726825d.pth``. The release publishes no checksum; the
  file name carries the first 8 hex digits of its sha256, which the download must match,
  and the whole sha256 is recorded (the configuration pins it). The file is a torch pickle:
  it is read only with ``torch.load(weights_only=True)``, which refuses any pickle that
  would run code. The demo's weights are torchvision's Inception-v3 at a seeded random
  initialisation.
- Statistics: the mean and covariance (float64) of the features of each condition and of the
  reference folder (every image file in it, sorted by name, read as RGB). FID is
  ||μ₁ − μ₂||² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½), torch-fidelity's formula (tests hold the two
  to each other), the trace of the root from a symmetric form (`frechet_distance`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from i2peval.errors import I2PEvalError
from i2peval.hub import ChecksumError, fetch_url, sha256_of
from i2peval.judges.judge import JudgeAsset

log = logging.getLogger(__name__)

WEIGHTS_NAME = "inception.pth"
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
FEATURES = 2048
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
BATCH_SIZE = 32


class FIDError(I2PEvalError):
    """FID cannot be computed from these images or statistics."""


def inception_settings(section: dict[str, Any]) -> dict[str, Any]:
    """The settings of the ``fid_inception`` section that decide the weights: the URL (a sha256
    pin only checks it), or the demo's seed."""
    if section["source"] == "demo":
        return {"source": "demo", "seed": section["demo_seed"]}
    return {"source": "url", "url": section["url"]}


def inception_pins(section: dict[str, Any]) -> dict[str, str]:
    return {WEIGHTS_NAME: section["sha256"]} if section["source"] == "url" and "sha256" in section else {}


def obtain_inception(settings: dict[str, Any], pins: dict[str, str], folder: Path) -> dict[str, Any]:
    """The Inception weights of `settings` in `folder`: downloaded and checked (against the pin,
    or the digits the file's name gives where nothing pins it), or the demo's random ones;
    return the record."""
    import torch

    path = folder / WEIGHTS_NAME
    if settings["source"] == "demo":
        torch.save(demo_state_dict(settings["seed"]), path)
        return {"demo": True, "source": "demo", "seed": settings["seed"], "files": {WEIGHTS_NAME: sha256_of(path)}}
    url = settings["url"]
    fetch_url(url, pins.get(WEIGHTS_NAME), path)
    sha256 = sha256_of(path)
    prefix = Path(url).stem.rsplit("-", 1)[-1]
    if len(prefix) == 8 and not sha256.startswith(prefix):
        path.unlink()
        raise ChecksumError(f"{url} has sha256 {sha256}, whose first digits its name gives as {prefix}")
    read_weights(path)  # refuses a file that is not plain tensors now, not in a later job
    return {"demo": False, "source": "url", "url": url, "pinned": bool(pins), "files": {WEIGHTS_NAME: sha256}}


def read_weights(path: Path) -> dict[str, Any]:
    """The state dict of a weights file, read with ``torch.load(weights_only=True)``."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as error:
        raise FIDError(f"{path}: refused: not plain weights ({error})") from error


def inception_unpinned(
    settings: dict[str, Any], pins: dict[str, str], record_path: Path, record: dict[str, Any]
) -> list[str]:
    """A warning when the downloaded weights are not pinned (the release publishes no checksum)."""
    if settings["source"] != "url" or pins:
        return []
    sha256 = record["files"][WEIGHTS_NAME]
    return [
        f"The FID Inception weights are not pinned: {settings['url']} has no published checksum, and their "
        f"first download recorded sha256 {sha256} in {record_path}. Pin it: set fid_inception.sha256: {sha256} "
        "in the configuration (this reruns nothing)."
    ]


def demo_state_dict(seed: int) -> dict[str, Any]:
    """Weights in the layout of the FID Inception: torchvision's Inception-v3 (1,008 classes, no
    auxiliary head) at a random initialisation seeded by `seed`, its batch norms set to the
    statistics of a few random images (at their initial statistics, the activations of a
    random network grow layer by layer to magnitudes whose covariance float64 cannot hold)."""
    import torch
    from torchvision.models import inception_v3

    torch.manual_seed(seed)
    model = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=True)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # running statistics = those of the batch
    with torch.no_grad():
        model.train()(torch.rand(4, 3, 299, 299) * 2 - 1)
    return model.eval().state_dict()


ASSET = JudgeAsset(
    name="fid_inception",
    output_files=(WEIGHTS_NAME,),
    settings=inception_settings,
    obtain=obtain_inception,
    demo_note="FID uses demo Inception weights (random, the real network's layout): its values mean nothing.",
    pins=inception_pins,
    unpinned=inception_unpinned,
)


def load_inception(folder: Path, device: str = "cpu"):
    """torch-fidelity's FID Inception with the asset's weights (checked against the record
    by the caller), on `device`, returning 2048-d features of uint8 NCHW images."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    state_dict = read_weights(folder / WEIGHTS_NAME)
    # torch-fidelity reads its weights with torch.load(weights_only=False): it gets a file
    # written here from the tensors read above, so no pickle from elsewhere runs
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / WEIGHTS_NAME
        torch.save(state_dict, path)
        model = FeatureExtractorInceptionV3(
            "inception-v3-compat", [str(FEATURES)], feature_extractor_weights_path=str(path)
        )
    return model.to(device)


def image_batches(images: Iterable[np.ndarray], size: int = BATCH_SIZE) -> Iterator[list[np.ndarray]]:
    batch = []
    for image in images:
        batch.append(image)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def inception_features(model, images: Iterable[np.ndarray], device: str = "cpu") -> np.ndarray:
    """(N, 2048) float64 features of HxWx3 uint8 `images`, in order; images of one size go
    through the network together (each is resized to 299 x 299 on its own)."""
    import torch

    rows = []
    with torch.inference_mode():
        for batch in image_batches(images):
            features: list[np.ndarray | None] = [None] * len(batch)
            by_shape: dict[tuple[int, ...], list[int]] = {}
            for index, image in enumerate(batch):
                by_shape.setdefault(image.shape, []).append(index)
            for indices in by_shape.values():
                stacked = np.stack([batch[index] for index in indices])
                tensor = torch.from_numpy(stacked).permute(0, 3, 1, 2).to(device)
                for index, row in zip(indices, model(tensor)[0].double().cpu().numpy()):
                    features[index] = row
            rows.extend(features)
    if not rows:
        raise FIDError("no images to compute FID features of")
    return np.stack(rows)


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are observations) of `features`."""
    if len(features) < 2:
        raise FIDError(f"FID needs at least 2 images, got {len(features)}")
    if not np.all(np.isfinite(features)):
        raise FIDError("the Inception features are not all finite")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def covariance_root(cov: np.ndarray) -> np.ndarray:
    """The symmetric square root of a covariance matrix (negative rounding-error eigenvalues as 0)."""
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(
    mean_1: np.ndarray, cov_1: np.ndarray, mean_2: np.ndarray, cov_2: np.ndarray, root_2: np.ndarray | None = None
) -> float:
    """The Fréchet distance of two Gaussians; `root_2` is `covariance_root(cov_2)`, when known.

    tr (Σ₁Σ₂)^½ is the sum of the roots of the eigenvalues of Σ₂^½ Σ₁ Σ₂^½, which are those
    of Σ₁Σ₂ (torch-fidelity takes them of Σ₁Σ₂ itself): the symmetric form keeps them real
    and takes a fraction of the time at 2,048 dimensions.
    """
    root_2 = covariance_root(cov_2) if root_2 is None else root_2
    inner = root_2 @ cov_1 @ root_2
    root_trace = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)))
    distance = float(np.sum((mean_1 - mean_2) ** 2) + np.trace(cov_1) + np.trace(cov_2) - 2 * root_trace)
    if not math.isfinite(distance):
        raise FIDError("the Fréchet distance is not finite")
    return distance


def reference_images(folder: Path) -> list[Path]:
    """The image files of a reference folder, sorted; `FIDError` naming the folder when it has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FIDError(f"FID reference folder {folder}: no such folder")
    paths = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
    if len(paths) < 2:
        raise FIDError(f"FID reference folder {folder}: {len(paths)} image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths


def listing_digest(folder: Path) -> str:
    """sha256 of the reference folder's image names, sizes and modification times: a change
    of any image recomputes the reference statistics."""
    digest = hashlib.sha256()
    for path in reference_images(folder):
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as error:
        raise FIDError(f"FID reference image {path}: cannot read it: {error}") from error


def write_statistics(path: Path, mean: np.ndarray, cov: np.ndarray, count: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez(handle, mean=mean, cov=cov, count=np.array(count))


def read_statistics(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean, covariance and image count written by `write_statistics`; `FIDError` naming the file."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            mean, cov, count = stored["mean"], stored["cov"], int(stored["count"])
    except (OSError, KeyError, ValueError) as error:
        raise FIDError(f"{path}: not FID statistics: {error}") from error
    if mean.shape != (FEATURES,) or cov.shape != (FEATURES, FEATURES):
        raise FIDError(f"{path}: FID statistics of shapes {mean.shape} and {cov.shape}, not ({FEATURES},)")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        raise FIDError(f"{path}: FID statistics are not all finite")
    return mean, cov, count


def condition_images(image_files: Iterable[Path]) -> Iterator[np.ndarray]:
    """The RGB pixels of every image in the generate jobs' containers `image_files`, read a
    batch at a time; a damaged image fails naming its container (`imagestore.decode_png`)."""
    from i2peval.generation.imagestore import decode_png, iter_image_batches

    for path in image_files:
        for prompt_ids, image_indices, pngs in iter_image_batches(path, BATCH_SIZE):
            for png, prompt_id, image_index in zip(pngs, prompt_ids, image_indices):
                yield np.asarray(decode_png(png, Path(path), prompt_id, image_index))


def statistics_job(images: Iterable[np.ndarray], inception_record: Path, out: Path, device: str = "cpu") -> int:
    """Write the FID statistics of `images` to `out`, in the features of the Inception asset
    whose record is `inception_record` (its files checked first); return the image count."""
    from i2peval.judges.assets import read_asset_record, verify_asset_files

    record = read_asset_record(ASSET.name, inception_record)
    verify_asset_files(ASSET.name, record, inception_record)
    model = load_inception(Path(inception_record).parent, device)
    features = inception_features(model, images, device)
    mean, cov = statistics(features)
    write_statistics(out, mean, cov, len(features))
    log.info("FID statistics of %d images: %s", len(features), out)
    return len(features)


def fid_table(prompt_set: str, conditions: dict[tuple[str, str], Path], reference: Path):
    """The FID table (schemas.FID) of each (model, mitigation)'s statistics file against the reference's."""
    import pyarrow as pa

    from i2peval.schemas import FID

    reference_mean, reference_cov, reference_count = read_statistics(reference)
    reference_root = covariance_root(reference_cov)
    rows = []
    for (model, mitigation), path in sorted(conditions.items()):
        mean, cov, count = read_statistics(path)
        fid = frechet_distance(mean, cov, reference_mean, reference_cov, reference_root)
        rows.append({"prompt_set": prompt_set, "model": model, "mitigation": mitigation, "images": count,
                     "reference_images": reference_count, "fid": fid})  # fmt: skip
    return pa.Table.from_pylist(rows, schema=FID)
