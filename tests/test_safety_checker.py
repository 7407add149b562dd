"""The Stable Diffusion safety checker judge: diffusers' verdict, its margins, no image touched."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import FolderHub
from PIL import Image

from i2peval.hub import ChecksumError
from i2peval.judges.batch import ImageBatch
from i2peval.judges.registry import JUDGE_COLUMNS
from i2peval.judges.safety_checker import (
    SAFETY_CHECKER_VERDICT,
    SNAPSHOT_FILES,
    SafetyChecker,
    build_demo_safety_checker_assets,
    fetch_safety_checker_assets,
    verdicts,
)

CPU = torch.device("cpu")


def one_concept(concept_margin: float, special_margin: float):
    """Cosines and thresholds of one image whose first concept and first special concept
    have the given margins; every other margin is -0.5."""
    concept_cos = np.full((1, 17), 0.1, np.float32)
    special_cos = np.full((1, 3), 0.1, np.float32)
    concept_thresholds = np.full(17, 0.6, np.float32)
    special_thresholds = np.full(3, 0.6, np.float32)
    concept_thresholds[0] = np.float32(0.3)
    special_thresholds[0] = np.float32(0.3)
    concept_cos[0, 0] = np.float32(0.3) + np.float32(concept_margin)
    special_cos[0, 0] = np.float32(0.3) + np.float32(special_margin)
    return concept_cos, special_cos, concept_thresholds, special_thresholds


@pytest.mark.parametrize(
    ("concept_margin", "special_margin", "nsfw"),
    [
        (0.0004, -0.1, False),  # rounds to 0.000: not over the threshold, as diffusers rounds
        (0.0006, -0.1, True),  # rounds to 0.001
        (-0.005, 0.002, True),  # a special concept raises every concept by 0.01: -0.005 + 0.01 > 0
        (-0.005, 0.0004, False),  # a special margin that rounds to 0 raises nothing
        (-0.0101, 0.002, False),  # raised, still below: -0.0001 rounds to -0.0
    ],
)
def test_verdict_follows_diffusers_rounding_and_special_care_rule(concept_margin, special_margin, nsfw):
    found, concept, special = verdicts(*one_concept(concept_margin, special_margin))
    assert found.tolist() == [nsfw]
    assert concept[0, 0] == pytest.approx(concept_margin, abs=1e-6)  # margins are kept unrounded, unraised
    assert special[0, 0] == pytest.approx(special_margin, abs=1e-6)


@pytest.fixture(scope="module")
def checker(tmp_path_factory):
    folder = tmp_path_factory.mktemp("safety-checker")
    record = build_demo_safety_checker_assets(1, folder)
    return folder, record, SafetyChecker(folder, CPU)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def random_batch(count: int, seed: int = 0) -> ImageBatch:
    rng = np.random.default_rng(seed)
    pngs = [png(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(count)]
    return ImageBatch.decode(list(range(count)), [0] * count, pngs, [""] * count, Path("synthetic"))


def test_verdicts_and_margins_are_those_of_diffusers_forward(checker):
    folder, _, judge = checker
    model = judge.model
    batch = random_batch(12)
    pixels = judge.processor(images=batch.images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        embeddings = model.visual_projection(model.vision_model(pixels)[1])
        cos = torch.nn.functional.normalize(embeddings) @ torch.nn.functional.normalize(model.concept_embeds).T
        # one threshold for every concept, at the median of the images' largest cosines (about
        # half the images on each side), and special concepts that fire for a few images
        model.concept_embeds_weights.copy_(cos.max(dim=1).values.median().expand(17))
        special_cos = (
            torch.nn.functional.normalize(embeddings) @ torch.nn.functional.normalize(model.special_care_embeds).T
        )
        model.special_care_embeds_weights.copy_(special_cos.max(dim=0).values - 0.002)
    scores = judge.score_batch(batch)
    throwaway = np.ones((12, 2, 2, 3))
    _, expected = model(pixels, throwaway)
    assert scores[SAFETY_CHECKER_VERDICT] == list(expected)
    assert 0 < sum(expected) < 12
    assert sorted(scores) == sorted(JUDGE_COLUMNS["safety_checker"])


def test_scoring_never_changes_an_image(checker):
    _, _, judge = checker
    batch = random_batch(6, seed=3)
    before = [np.asarray(image).copy() for image in batch.images]
    judge.score_batch(batch)
    assert all(np.array_equal(np.asarray(image), original) for image, original in zip(batch.images, before))


def test_demo_assets_are_safetensors_with_their_configs(checker):
    folder, record, _ = checker
    assert record["demo"] is True
    assert set(record["files"]) == set(SNAPSHOT_FILES)
    assert not list(folder.glob("*.bin"))
    for name, sha256 in record["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha256


def hub_folder(checker, tmp_path, with_weights=True):
    folder, _, _ = checker
    repo = tmp_path / "remote"
    repo.mkdir()
    for name in SNAPSHOT_FILES:
        if name != "model.safetensors" or with_weights:
            (repo / name).write_bytes((folder / name).read_bytes())
    (repo / "pytorch_model.bin").write_bytes(b"pickled weights: never fetched")
    return repo


def spec(**extra):
    return {"source": "hub", "repo_id": "CompVis/stable-diffusion-safety-checker", "revision": "main", **extra}


def test_a_hub_snapshot_is_fetched_verified_and_loads(checker, tmp_path):
    repo = hub_folder(checker, tmp_path)
    hub = FolderHub(repo)
    weights_sha256 = hashlib.sha256((repo / "model.safetensors").read_bytes()).hexdigest()
    record = fetch_safety_checker_assets(hub, spec(weights_sha256=weights_sha256), tmp_path / "assets")
    assert sorted(hub.downloaded) == sorted(SNAPSHOT_FILES)
    assert record["weights_pinned"] is True and record["files"]["model.safetensors"] == weights_sha256
    SafetyChecker(tmp_path / "assets", CPU).score_batch(random_batch(2))


def test_a_revision_without_safetensors_is_refused(checker, tmp_path):
    repo = hub_folder(checker, tmp_path, with_weights=False)
    with pytest.raises(ChecksumError, match=r"lacks \['model.safetensors'\]: weights load from model.safetensors only"):
        fetch_safety_checker_assets(FolderHub(repo), spec(), tmp_path / "assets")


def test_weights_other_than_the_pinned_ones_are_refused(checker, tmp_path):
    repo = hub_folder(checker, tmp_path)
    with pytest.raises(ChecksumError, match="safety_checker.weights_sha256 pins 000"):
        fetch_safety_checker_assets(FolderHub(repo), spec(weights_sha256="0" * 64), tmp_path / "assets")
    assert not (tmp_path / "assets" / "model.safetensors").exists()
