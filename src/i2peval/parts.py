"""A job's finished batches on disk, so that a killed job loses only the batch in flight.

While a job runs, each finished batch of rows is saved as one Parquet file in
``<output>.parts/`` (written under a temporary name, synced and renamed, with page
checksums), next to a fingerprint of everything that decides the rows. A rerun with the
same fingerprint keeps the parts and skips their rows; another fingerprint discards them.
A part that cannot be read back whole (a power loss, a full disk, a truncated file),
leftover temporary files, and a part holding rows the job did not ask for or already has
are discarded with a warning, so their rows are made again and never accepted.

`finish` returns the rows of all parts, sorted by key, only when they are exactly the rows
the job asked for; `discard` removes the folder once the job's outputs are written.

A job holds a lock beside its parts (``<output>.lock``) from the moment it opens them: a
second process that reaches the same job (a second run on the same folder, started after
``snakemake --unlock``) fails at once naming the holder, and never resumes, discards or
removes the live job's parts. The lock dies with its process, so a killed job's parts
are resumed by the next run.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from i2peval.errors import I2PEvalError
from i2peval.schemas import SchemaMismatch, conform
from i2peval.storage import atomic_write, write_text

log = logging.getLogger(__name__)

PART_NAME = re.compile(r"^part-(\d+)\.parquet$")
STAMP_NAME = "settings.sha256"


class JobBusy(I2PEvalError):
    """Another live process is working on the same job."""


# The job locks this process holds, by lock file: a process may open a job's parts again.
_HELD: dict[Path, IO[str]] = {}


def claim_job(output: Path) -> IO[str]:
    """Hold the lock of the job that writes `output` (an open file; the lock lasts while it
    is open, and at most as long as this process); `JobBusy` naming the holder when another
    process holds it."""
    lock_path = output.with_name(output.name + ".lock").absolute()
    held = _HELD.get(lock_path)
    if held is not None and not held.closed:
        return held
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 (held until the job ends)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise JobBusy(
                f"{output} is being made by {holder}: another run is working on this job. Wait for it or "
                "stop it; before `snakemake --unlock`, check that no run is active on this folder"
            ) from None
        try:
            same_file = os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        handle.close()  # the holder finished and removed the file while we opened it: take the new one
    handle.seek(0)
    handle.truncate()
    since = datetime.now(UTC).isoformat(timespec="seconds")
    handle.write(f"process {os.getpid()} on host {socket.gethostname()} (since {since})")
    handle.flush()
    _HELD[lock_path] = handle
    return handle


def release_job(handle: IO[str]) -> None:
    """Remove a job's lock file and let the lock go."""
    lock_path = Path(handle.name)
    _HELD.pop(lock_path, None)
    lock_path.unlink(missing_ok=True)
    handle.close()


class IncompleteJob(I2PEvalError):
    """A job's saved rows are not exactly the rows it was asked for."""


def fingerprint(settings: dict[str, Any]) -> str:
    """Stable hash of JSON-serialisable settings."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


class RowsMismatch(I2PEvalError):
    """A file does not hold exactly the rows it should."""


def describe_keys(keys: Iterable[tuple], limit: int = 5) -> str:
    """The first few keys, in order, and how many more there are."""
    keys = sorted(keys)
    shown = ", ".join(str(key) for key in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_keys(source: str | Path, keys: list[tuple], expected: Iterable[tuple], noun: str = "rows") -> None:
    """Raise `RowsMismatch` naming `source` unless `keys` are the `expected` keys, each once."""
    expected = set(expected)
    found = set(keys)
    problems = []
    if len(found) != len(keys):
        problems.append(f"{len(keys) - len(found)} duplicate {noun}")
    if expected - found:
        problems.append(f"missing {len(expected - found)} {noun}: {describe_keys(expected - found)}")
    if found - expected:
        problems.append(f"{len(found - expected)} {noun} nobody asked for: {describe_keys(found - expected)}")
    if problems:
        raise RowsMismatch(f"{source}: holds {len(keys)} {noun}, expected {len(expected)}; " + "; ".join(problems))


class JobParts:
    """The saved batches of one job whose rows are identified by the `key` columns."""

    def __init__(
        self,
        output: str | Path,
        schema: pa.Schema,
        key: Sequence[str],
        expected: Iterable[tuple],
        settings: dict[str, Any],
    ):
        self.output = Path(output)
        self.schema = schema
        self.key = tuple(key)
        self.expected = list(expected)
        self._expected_set = set(self.expected)
        if len(self._expected_set) != len(self.expected):
            raise ValueError(f"{self.output}: the job asks for some rows twice")
        self.parts_dir = self.output.with_name(self.output.name + ".parts")
        self._lock = claim_job(self.output)
        self._done: dict[tuple, Path] = {}
        self._next_number = 0
        self._open(fingerprint({"settings": settings, "expected": [list(key) for key in self.expected]}))

    def _open(self, stamp: str) -> None:
        stamp_path = self.parts_dir / STAMP_NAME
        if self.parts_dir.exists() and (
            not stamp_path.is_file() or stamp_path.read_text().strip() != stamp
        ):
            log.info("%s: discarding parts saved with other settings", self.parts_dir)
            shutil.rmtree(self.parts_dir)
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        if not stamp_path.is_file():
            write_text(stamp_path, stamp)
        for leftover in self.parts_dir.glob(".*.tmp"):
            leftover.unlink()
        for part in sorted(self.parts_dir.iterdir()):
            if part.name == STAMP_NAME:
                continue
            match = PART_NAME.match(part.name)
            if match is None:
                log.warning("%s: removing a file that is not a part", part)
                part.unlink()
                continue
            self._next_number = max(self._next_number, int(match.group(1)) + 1)
            problem, keys = self._check_part(part)
            if problem:
                log.warning("%s: discarding this part, its rows will be made again: %s", part, problem)
                part.unlink()
                continue
            self._done.update(dict.fromkeys(keys, part))
        if self._done:
            log.info("%s: %d of %d rows already saved", self.parts_dir, len(self._done), len(self.expected))

    def _check_part(self, part: Path) -> tuple[str | None, list[tuple]]:
        try:
            table = conform(pq.read_table(part, page_checksum_verification=True), self.schema, part)
        except (OSError, pa.ArrowException, SchemaMismatch) as error:
            return f"unreadable ({error})", []
        keys = self._keys(table)
        if len(set(keys)) != len(keys):
            return "it holds a row twice", []
        foreign = set(keys) - self._expected_set
        if foreign:
            return f"rows the job did not ask for: {describe_keys(foreign)}", []
        again = set(keys) & set(self._done)
        if again:
            return f"rows another part holds: {describe_keys(again)}", []
        return None, keys

    def _keys(self, table: pa.Table) -> list[tuple]:
        return list(zip(*(table[name].to_pylist() for name in self.key)))

    def completed(self) -> set[tuple]:
        """Keys of the rows already saved."""
        return set(self._done)

    def add(self, rows: pa.Table | list[dict[str, Any]]) -> None:
        """Save one finished batch as a new part."""
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=self.schema)
        table = conform(table, self.schema, self.parts_dir)
        keys = self._keys(table)
        unexpected = (set(keys) - self._expected_set) | (set(keys) & set(self._done))
        if unexpected or len(set(keys)) != len(keys):
            raise ValueError(f"{self.parts_dir}: batch rows {describe_keys(unexpected)} are not pending")
        part = self.parts_dir / f"part-{self._next_number:06d}.parquet"
        atomic_write(part, lambda partial: pq.write_table(table, partial, write_page_checksum=True))
        self._next_number += 1
        self._done.update(dict.fromkeys(keys, part))

    def finish(self) -> pa.Table:
        """Every saved row, sorted by key; `IncompleteJob` unless they are exactly the expected rows."""
        missing = self._expected_set - set(self._done)
        if missing:
            raise IncompleteJob(
                f"{self.output}: {len(missing)} of {len(self.expected)} rows were never saved: "
                f"{describe_keys(missing)}"
            )
        parts = sorted(set(self._done.values()))
        tables = [conform(pq.read_table(part), self.schema, part) for part in parts]
        table = pa.concat_tables(tables) if tables else self.schema.empty_table()
        if table.num_rows != len(self.expected):
            raise IncompleteJob(
                f"{self.parts_dir}: holds {table.num_rows} rows, the job asked for {len(self.expected)}"
            )
        return table.sort_by([(name, "ascending") for name in self.key])

    def discard(self) -> None:
        """Remove the parts folder and the job's lock (once the job's outputs are written)."""
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        release_job(self._lock)
