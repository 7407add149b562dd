"""Judge assets: folders named by what decides the files, records, pins and their warnings."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from i2peval.config import validate_config
from i2peval.hub import ChecksumError
from i2peval.judges.assets import PinMismatch, read_asset_record, verify_asset_files
from i2peval.judges.registry import assets_of
from i2peval.storage import RecordError, write_json
from i2peval.study import Study

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def config():
    """The study's configuration with the schema's defaults the judges need."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["nudenet2"] = {
        "source": "url",
        "demo_seed": 0,
        "checkpoint": {"url": "https://example.org/detector.onnx"},
        "classes": {"url": "https://example.org/classes"},
    }
    config["safety_checker"] = {"source": "hub", "demo_seed": 0, "repo_id": "CompVis/x", "revision": "refs/pr/41"}
    return config


def configured(asset, config):
    return Study.from_config(validate_config(config)).assets[asset]


def unpinned_warnings(config, records):
    return [
        warning
        for asset, (path, record) in records.items()
        for warning in configured(asset, config).unpinned_warnings(path, record)
    ]


def nudenet2_record(detector="a" * 64, classes="b" * 64):
    return {"demo": False, "source": "url", "files": {"detector.onnx": detector, "classes.txt": classes}}


def test_q16_and_clip_score_share_one_asset():
    assert assets_of(["clip_score", "nudenet3", "q16"]) == ["q16", "nudenet3"]
    assert assets_of(["safety_checker", "nudenet2"]) == ["nudenet2", "safety_checker"]


def test_pinning_a_sha256_keeps_the_folder_and_another_url_moves_it(config):
    before = configured("nudenet2", config).folder
    config["nudenet2"]["checkpoint"]["sha256"] = "a" * 64
    assert configured("nudenet2", config).folder == before
    config["nudenet2"]["checkpoint"]["url"] = "https://example.org/other.onnx"
    assert configured("nudenet2", config).folder != before
    assert before.startswith("resources/nudenet2/url-")


def test_a_pin_that_differs_from_the_record_is_refused_naming_both(config, tmp_path):
    config["nudenet2"]["checkpoint"]["sha256"] = "a" * 64
    configured("nudenet2", config).check_pins(nudenet2_record(), tmp_path / "nudenet2.json")
    config["nudenet2"]["classes"]["sha256"] = "c" * 64
    with pytest.raises(
        PinMismatch, match=f"pins classes.txt to sha256 {'c' * 64}, but .*nudenet2.json records {'b' * 64}"
    ):
        configured("nudenet2", config).check_pins(nudenet2_record(), tmp_path / "nudenet2.json")


def test_unpinned_nudenet2_files_are_warned_about_with_the_hash_to_pin(config, tmp_path):
    records = {"nudenet2": (tmp_path / "nudenet2.json", nudenet2_record())}
    warnings = unpinned_warnings(config, records)
    assert len(warnings) == 2
    assert f"set nudenet2.checkpoint.sha256: {'a' * 64} in the configuration (this reruns nothing)" in warnings[0]
    assert "https://example.org/detector.onnx has no published checksum" in warnings[0]
    config["nudenet2"]["checkpoint"]["sha256"] = "a" * 64
    config["nudenet2"]["classes"]["sha256"] = "b" * 64
    assert unpinned_warnings(config, records) == []


def test_a_safety_checker_neither_at_a_commit_nor_pinned_is_warned_about(config, tmp_path):
    record = {"demo": False, "source": "hub", "commit": "c" * 40, "files": {"model.safetensors": "d" * 64}}
    path = tmp_path / "safety_checker.json"
    # the schema pins the weights of its default revision: without that pin
    unpinned = replace(configured("safety_checker", config), pins={})
    [warning] = unpinned.unpinned_warnings(path, record)
    assert f"pin safety_checker.weights_sha256: {'d' * 64}" in warning
    config["safety_checker"]["weights_sha256"] = "d" * 64
    assert configured("safety_checker", config).unpinned_warnings(path, record) == []


def test_files_that_differ_from_their_record_are_refused_saying_how_to_repair(tmp_path):
    folder = tmp_path / "resources" / "nudenet2" / "demo-x"
    folder.mkdir(parents=True)
    (folder / "detector.onnx").write_bytes(b"detector")
    (folder / "classes.txt").write_bytes(b"classes")
    record = nudenet2_record(hashlib.sha256(b"detector").hexdigest(), hashlib.sha256(b"classes").hexdigest())
    verify_asset_files("nudenet2", record, folder / "nudenet2.json")
    (folder / "classes.txt").write_bytes(b"other classes")
    with pytest.raises(ChecksumError, match="classes.txt does not match .* run `snakemake --until nudenet2_assets`"):
        verify_asset_files("nudenet2", record, folder / "nudenet2.json")
    (folder / "classes.txt").unlink()
    with pytest.raises(ChecksumError, match="classes.txt is missing"):
        verify_asset_files("nudenet2", record, folder / "nudenet2.json")


def test_a_damaged_record_is_refused_naming_it(tmp_path):
    path = tmp_path / "safety_checker.json"
    write_json(path, {"demo": False, "source": "hub"})
    with pytest.raises(RecordError, match=r"safety_checker.json: lacks \['files'\]"):
        read_asset_record("safety_checker", path)
    write_json(path, {"demo": False, "source": "hub", "files": {}})
    with pytest.raises(RecordError, match="'files' must map every file"):
        read_asset_record("safety_checker", path)
