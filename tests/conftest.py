"""Tiny random pipelines shared by the engine tests (built once per session)."""

from __future__ import annotations

import pytest

from i2peval.generation.models import build_tiny_pipeline


@pytest.fixture(scope="session")
def tiny_sd_snapshot(tmp_path_factory):
    """A tiny random Stable Diffusion 1.x snapshot (PNDM, as SD 1.4), 64 px."""
    path = tmp_path_factory.mktemp("tiny-sd") / "snapshot"
    build_tiny_pipeline(path, seed=0, scheduler="pndm", architecture="sd")
    return path


@pytest.fixture(scope="session")
def tiny_sdxl_snapshot(tmp_path_factory):
    """A tiny random SDXL snapshot (Euler, as SDXL base 1.0), 64 px."""
    path = tmp_path_factory.mktemp("tiny-sdxl") / "snapshot"
    build_tiny_pipeline(path, seed=0, scheduler="euler", architecture="sdxl")
    return path
