"""A job's saved batches: resumed when whole, discarded when damaged, never accepted short."""

import errno
import logging
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from i2peval.parts import IncompleteJob, JobBusy, JobParts
from i2peval.storage import DiskFull

SCHEMA = pa.schema([("prompt_id", pa.int32()), ("image_index", pa.int32()), ("value", pa.float32())])
KEY = ("prompt_id", "image_index")
EXPECTED = [(prompt_id, index) for prompt_id in range(3) for index in range(2)]
SETTINGS = {"steps": 4}


def rows(*keys):
    return [{"prompt_id": p, "image_index": i, "value": p + i / 10} for p, i in keys]


def open_parts(tmp_path, expected=EXPECTED, settings=SETTINGS):
    return JobParts(tmp_path / "out.parquet", SCHEMA, KEY, expected, settings)


def saved_in_three_batches(tmp_path):
    parts = open_parts(tmp_path)
    for batch in ([(0, 0), (0, 1)], [(1, 0), (1, 1)], [(2, 0), (2, 1)]):
        parts.add(rows(*batch))
    return sorted(parts.parts_dir.glob("part-*.parquet"))


def test_a_part_lost_in_a_power_loss_and_deleted_by_hand_is_made_again_without_overwriting_others(tmp_path):
    # the reported case: a killed job, one part left empty, the user deletes it and reruns
    first, middle, last = saved_in_three_batches(tmp_path)
    middle.write_bytes(b"")
    middle.unlink()
    resumed = open_parts(tmp_path)
    assert resumed.completed() == {(0, 0), (0, 1), (2, 0), (2, 1)}
    resumed.add(rows((1, 0), (1, 1)))
    assert last.exists() and pq.read_table(last)["prompt_id"].to_pylist() == [2, 2]
    table = resumed.finish()
    assert list(zip(table["prompt_id"].to_pylist(), table["image_index"].to_pylist())) == EXPECTED


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(b""),
        lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
        lambda path: path.write_bytes(b"PAR1" + b"\0" * 200 + b"PAR1"),
    ],
    ids=["empty", "truncated", "garbage"],
)
def test_a_damaged_part_is_discarded_with_a_warning_and_its_rows_are_pending_again(tmp_path, caplog, damage):
    _, middle, _ = saved_in_three_batches(tmp_path)
    damage(middle)
    with caplog.at_level(logging.WARNING):
        resumed = open_parts(tmp_path)
    assert resumed.completed() == {(0, 0), (0, 1), (2, 0), (2, 1)}
    assert not middle.exists()
    assert "discarding this part" in caplog.text and middle.name in caplog.text
    with pytest.raises(IncompleteJob, match=r"out.parquet: 2 of 6 rows were never saved: \(1, 0\), \(1, 1\)"):
        resumed.finish()


def silently_corrupted(path):
    """Flip one byte of `path` so that it still reads as Parquet, with other values."""
    original = path.read_bytes()
    expected = pq.read_table(path)
    for position in range(4, len(original)):
        data = bytearray(original)
        data[position] ^= 0x01
        path.write_bytes(bytes(data))
        try:
            if not pq.read_table(path).equals(expected):
                return
        except Exception:
            pass
    raise AssertionError("no silent corruption found")


def test_a_part_whose_values_changed_on_disk_is_caught_by_its_page_checksums(tmp_path):
    _, middle, _ = saved_in_three_batches(tmp_path)
    silently_corrupted(middle)
    assert open_parts(tmp_path).completed() == {(0, 0), (0, 1), (2, 0), (2, 1)}


def test_parts_of_other_rows_or_repeated_rows_are_never_accepted(tmp_path):
    parts = open_parts(tmp_path)
    parts.add(rows((0, 0), (0, 1)))
    foreign = parts.parts_dir / "part-000007.parquet"
    pq.write_table(pa.Table.from_pylist(rows((9, 0)), schema=SCHEMA), foreign)
    repeated = parts.parts_dir / "part-000008.parquet"
    pq.write_table(pa.Table.from_pylist(rows((0, 1), (1, 0)), schema=SCHEMA), repeated)
    stray = parts.parts_dir / "notes.txt"
    stray.write_text("x")
    leftover = parts.parts_dir / ".part-000009.parquet.123.tmp"
    leftover.write_bytes(b"half a part")

    resumed = open_parts(tmp_path)
    assert resumed.completed() == {(0, 0), (0, 1)}
    assert sorted(path.name for path in resumed.parts_dir.iterdir()) == ["part-000000.parquet", "settings.sha256"]


def test_other_settings_or_other_rows_asked_for_discard_every_part(tmp_path):
    saved_in_three_batches(tmp_path)
    assert open_parts(tmp_path, settings={"steps": 50}).completed() == set()
    saved_in_three_batches(tmp_path / "again")
    assert open_parts(tmp_path / "again", expected=EXPECTED[:4]).completed() == set()


def test_adding_rows_that_are_not_pending_is_refused(tmp_path):
    parts = open_parts(tmp_path)
    parts.add(rows((0, 0)))
    with pytest.raises(ValueError, match="not pending"):
        parts.add(rows((0, 0)))
    with pytest.raises(ValueError, match="not pending"):
        parts.add(rows((5, 5)))


def test_finish_returns_every_row_sorted_by_key_and_discard_removes_the_folder(tmp_path):
    parts = open_parts(tmp_path)
    parts.add(rows((2, 1), (0, 0)))
    parts.add(rows((1, 1), (2, 0), (0, 1), (1, 0)))
    table = parts.finish()
    assert list(zip(table["prompt_id"].to_pylist(), table["image_index"].to_pylist())) == EXPECTED
    parts.discard()
    assert not parts.parts_dir.exists()


def test_a_full_disk_while_saving_a_part_names_it_and_leaves_nothing_partial(tmp_path, monkeypatch):
    parts = open_parts(tmp_path)
    parts.add(rows((0, 0)))

    def full_disk(table, where, **options):
        with open(where, "wb") as handle:
            handle.write(b"PAR1 half")
        raise OSError(errno.ENOSPC, "No space left on device", str(where))

    monkeypatch.setattr(pq, "write_table", full_disk)
    with pytest.raises(DiskFull, match=r"no space left on device while writing .*part-000001.parquet \(.* MB free"):
        parts.add(rows((0, 1)))
    monkeypatch.undo()
    assert sorted(path.name for path in parts.parts_dir.iterdir()) == ["part-000000.parquet", "settings.sha256"]
    resumed = open_parts(tmp_path)
    assert resumed.completed() == {(0, 0)}


# A job in another process: opens its parts, saves one batch, says so, and waits to be told to end.
HOLDER = """
import sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from test_parts import open_parts, rows
parts = open_parts(Path(sys.argv[1]))
parts.add(rows((0, 0), (0, 1)))
print("saved", flush=True)
sys.stdin.read()
"""


def test_a_job_another_live_process_works_on_is_refused_naming_it_and_its_parts_are_kept(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), str(Path(__file__).parent)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "saved"
        # other settings would discard the live job's parts, the same ones would resume them
        for settings in ({"steps": 50}, SETTINGS):
            with pytest.raises(
                JobBusy,
                match=rf"out\.parquet is being made by process {holder.pid} on host .*: another run is working on "
                r"this job\. .* check that no run is active on this folder",
            ):
                open_parts(tmp_path, settings=settings)
        assert [path.name for path in (tmp_path / "out.parquet.parts").glob("part-*")] == ["part-000000.parquet"]
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # the holder ended without finishing, as a killed job does: its parts are resumed
    assert open_parts(tmp_path).completed() == {(0, 0), (0, 1)}
