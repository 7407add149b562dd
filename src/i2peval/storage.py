"""Writing and reading artifacts so that a killed job or a full disk never leaves a file
that looks finished but is not.

Every artifact is written to a temporary name beside its destination, flushed to disk and
renamed: a reader sees the whole file or none. A full disk becomes `DiskFull`, naming the
file and the space left, and the temporary file is removed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from i2peval.errors import I2PEvalError


class DiskFull(I2PEvalError):
    """No space was left on the device while writing a file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        super().__init__(
            f"no space left on device while writing {self.path} "
            f"({free_space_text(self.path)}); free some space and rerun: finished work is kept"
        )


class RecordError(I2PEvalError):
    """A JSON record another stage wrote cannot be read or lacks what it must hold."""


def free_space_text(path: Path) -> str:
    """'<n> MB free on the file system of <folder>' for the nearest existing parent of `path`."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    return f"{free / 1e6:.1f} MB free on the file system of {folder}"


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


DISK_FULL_MESSAGES = ("No space left on device", "os error 28", "Disk quota exceeded")


@contextmanager
def writing_into(folder: str | Path) -> Iterator[None]:
    """Turn a full disk met while writing into `folder` into `DiskFull` naming it, whichever
    library raised it (safetensors, for one, raises its own error without the path)."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as error:
        if is_disk_full(error) or any(text in str(error) for text in DISK_FULL_MESSAGES):
            raise DiskFull(folder) from error
        raise


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Create `path` by calling ``write(temporary_path)``, syncing it to disk, then renaming it.

    On any failure the temporary file is removed and `path` is left as it was; a full disk
    raises `DiskFull` naming `path`.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(partial)
        _fsync(partial)
        partial.replace(path)
        _fsync(path.parent)
    except BaseException as error:
        partial.unlink(missing_ok=True)
        if is_disk_full(error):
            raise DiskFull(path) from error
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write a UTF-8 text file atomically."""
    return atomic_write(path, lambda partial: partial.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, record: Any) -> Path:
    """Write a JSON record atomically; the same record always gives the same bytes."""
    return write_text(path, json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json_record(
    path: str | Path, required: Sequence[str] = (), repair: str = "delete it and rerun to rebuild it"
) -> dict[str, Any]:
    """A JSON object written by a stage; `RecordError` naming `path` (and saying how to
    `repair` it) if unreadable or incomplete."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RecordError(f"{path}: not a readable JSON record ({error}); {repair}") from None
    if not isinstance(record, dict):
        raise RecordError(f"{path}: holds a JSON {type(record).__name__}, expected an object")
    missing = [key for key in required if key not in record]
    if missing:
        raise RecordError(f"{path}: lacks {missing}; {repair}")
    return record
