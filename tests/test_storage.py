"""Artifacts are whole or absent; a full disk and a damaged record say which file."""

import errno
import json
import os
import subprocess

import pytest

from i2peval.logs import describe_failure
from i2peval.prompts.i2p import PromptFileError
from i2peval.storage import (
    DiskFull,
    RecordError,
    atomic_write,
    read_json_record,
    write_json,
    writing_into,
)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs where that can be mounted (root), else skip: see the monkeypatched cases."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_raises_disk_full_naming_the_file_and_leaves_nothing_behind(small_disk):
    target = small_disk / "results" / "table.bin"
    with pytest.raises(DiskFull, match=r"while writing .*results/table.bin \([\d.]+ MB free on the file system of"):
        atomic_write(target, lambda partial: partial.write_bytes(os.urandom(200_000)))
    assert list((small_disk / "results").iterdir()) == []
    atomic_write(target, lambda partial: partial.write_bytes(b"fits"))
    assert target.read_bytes() == b"fits"


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "record.json"
    write_json(target, {"a": 1})

    def fails(partial):
        partial.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFull):
        atomic_write(target, fails)
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["record.json"]


def test_json_records_are_byte_identical_for_the_same_content(tmp_path):
    write_json(tmp_path / "a.json", {"b": [1, 2], "a": "x"})
    write_json(tmp_path / "b.json", {"a": "x", "b": [1, 2]})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_a_missing_record_is_named(tmp_path):
    with pytest.raises(RecordError, match="nothing.json: missing"):
        read_json_record(tmp_path / "nothing.json")


def test_failures_are_described_by_their_message_first():
    assert describe_failure(PromptFileError("i2p.csv: row 3: column 'sd_seed' is '-1'")) == (
        "ERROR: i2p.csv: row 3: column 'sd_seed' is '-1'\n"
    )
    disk_full = OSError(errno.ENOSPC, "No space left on device", "/tmp/x/part.parquet")
    assert describe_failure(disk_full).startswith(
        "ERROR: no space left on device while writing /tmp/x/part.parquet ("
    )
    try:
        {}["key"]
    except KeyError as error:
        unexpected = describe_failure(error)
    first, rest = unexpected.split("\n", 1)
    assert first == "ERROR: unexpected KeyError: 'key'"
    assert "Traceback" in rest


def test_a_full_disk_met_inside_a_library_names_the_folder_being_written(small_disk):
    from i2peval.models.tiny import build_tiny_pipeline

    snapshot = small_disk / "snapshot"
    with pytest.raises(DiskFull, match=r"while writing .*small-disk/snapshot \("), writing_into(snapshot):
        build_tiny_pipeline(snapshot, seed=0)
