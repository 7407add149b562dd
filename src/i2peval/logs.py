"""Logging for rule scripts: everything, warnings and failures included, to the rule's log.

A failure is written so that its first line says what went wrong in the user's terms: an
`I2PEvalError` as its message alone (it names the file, key or row), a full disk as the
path being written and the space left, anything else as a one-line summary followed by
its traceback.
"""

from __future__ import annotations

import logging
import sys
import traceback
from types import TracebackType
from typing import TextIO

from i2peval.errors import I2PEvalError
from i2peval.storage import free_space_text, is_disk_full


def describe_failure(error: BaseException) -> str:
    """The log's account of an uncaught exception, first line first."""
    if isinstance(error, I2PEvalError):
        return f"ERROR: {error}\n"
    if is_disk_full(error):
        where = error.filename or "a file"
        return (
            f"ERROR: no space left on device while writing {where} "
            f"({free_space_text(where) if error.filename else 'free space unknown'}); "
            "free some space and rerun: finished work is kept\n"
        )
    details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return f"ERROR: unexpected {type(error).__name__}: {error}\n\nDetails:\n{details}"


def _failure_hook(stream: TextIO):
    def hook(error_type: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        stream.write(describe_failure(error))
        stream.flush()

    return hook


def to_log_file(path: str) -> None:
    """Send stderr, the logging module's records and any failure to `path`."""
    sys.stderr = open(path, "w", buffering=1)  # noqa: SIM115 - stays open as stderr for the process lifetime
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.captureWarnings(True)
    sys.excepthook = _failure_hook(sys.stderr)
