"""Fixtures shared across test modules: tiny random pipelines, and one demo run (built once per session)."""

from __future__ import annotations

import pytest
from workflow_runs import DEMO_CONFIG, snakemake

from i2peval.models.tiny import build_tiny_if_cascade, build_tiny_pipeline


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


@pytest.fixture(scope="session")
def tiny_alt_snapshot(tmp_path_factory):
    """A tiny random AltDiffusion snapshot (XLM-R text encoder, PNDM), 64 px."""
    path = tmp_path_factory.mktemp("tiny-alt") / "snapshot"
    build_tiny_pipeline(path, seed=0, scheduler="pndm", architecture="alt")
    return path


@pytest.fixture(scope="session")
def tiny_sd3_snapshot(tmp_path_factory):
    """A tiny random SD 3.5 snapshot (MMDiT-X transformer, flow matching, CLIP-L, CLIP-G, T5), 64 px."""
    path = tmp_path_factory.mktemp("tiny-sd3") / "snapshot"
    build_tiny_pipeline(path, seed=0, scheduler="flow_match", architecture="sd3")
    return path


@pytest.fixture(scope="session")
def tiny_if_snapshot(tmp_path_factory):
    """A tiny random DeepFloyd IF cascade (IF-I, IF-II, x4 upscaler), 8, 16 and 64 px."""
    path = tmp_path_factory.mktemp("tiny-if") / "snapshot"
    build_tiny_if_cascade(path, seed=0)
    return path


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """A finished run of the demo configuration (a few minutes on 2 cores), shared by the
    workflow and browser tests; they may read it but must copy it before changing it."""
    workdir = tmp_path_factory.mktemp("demo")
    result = snakemake(workdir, DEMO_CONFIG, "--cores", "2")
    assert result.returncode == 0, result.stderr[-8000:]
    return workdir
