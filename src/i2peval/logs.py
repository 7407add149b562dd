"""Logging for rule scripts: everything, warnings and tracebacks included, to the rule's log."""

from __future__ import annotations

import logging
import sys


def to_log_file(path: str) -> None:
    """Send stderr and the logging module's records to `path`."""
    sys.stderr = open(path, "w", buffering=1)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.captureWarnings(True)
