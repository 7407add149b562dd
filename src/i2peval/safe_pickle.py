"""Load a pickled numpy array without letting the pickle run code.

Q16's prompt array ships only as a pickle (``prompts.p``). A pickle names the
functions it calls while loading; `load_numpy_pickle` admits only the globals that
rebuild a numpy array and refuses everything else (``os.system``, ``eval`` ...).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from i2peval.errors import I2PEvalError

ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class ForbiddenPickle(I2PEvalError, pickle.UnpicklingError):
    """The pickle asks for a global outside the allow-list."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals in `ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise ForbiddenPickle(
                f"pickle wants {module}.{name}, which is not on the allow-list "
                f"{sorted('.'.join(pair) for pair in ALLOWED_GLOBALS)}"
            )
        return super().find_class(module, name)


def load_numpy_pickle(path: str | Path) -> np.ndarray:
    """Unpickle a numpy array through the allow-list; anything but an ndarray is refused."""
    data = Path(path).read_bytes()
    value = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    if not isinstance(value, np.ndarray):
        raise ForbiddenPickle(f"{path}: holds a {type(value).__name__}, not a numpy array")
    return value
