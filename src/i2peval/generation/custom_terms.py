"""Guidance terms of the user's own: a mitigation of kind ``custom`` names a class
(``module:Class``) that implements the guidance-term protocol (guidance.GuidanceTerm).

The class is called with keyword arguments: ``concept`` (the mitigation's concept
text), ``guidance_scale`` (the classifier-free scale of the model) and every entry of the
mitigation's ``parameters``. The instance must have ``branches``, a tuple of
`guidance.Branch` (the conditionings it reads), and ``contribution(predictions, base,
step, state)``, which returns what to add to the guided prediction at `step`, or None.
``state`` is a fresh `guidance.TermState` per batch. A term with a true
``scaled_by_guidance`` attribute is added to the prompt's difference before the
classifier-free scale multiplies it, as SLD's is; otherwise it is added after.

The module is imported from the Python path, or from the working directory (where
Snakemake runs every job). The sha256 of its source file is part of the mitigation's
settings: changing the code makes that mitigation's images again, and nothing else; a
local job refuses to run a module that changed since the plan recorded it (a cluster job
reads the configuration again when it starts, and records the module as it finds it).
Planning builds the term once with a classifier-free scale of 7.5 to check it.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from i2peval.errors import I2PEvalError
from i2peval.hub import sha256_of

TERM_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
# The classifier-free scale a term is built with when the plan checks it.
PLAN_GUIDANCE_SCALE = 7.5


class CustomTermError(I2PEvalError, ValueError):
    """A custom guidance term cannot be imported, built or does not implement the protocol."""


def load_term_class(mitigation: str, term: str, directory: Path = Path(".")) -> tuple[type, Path]:
    """The class `term` ("module:Class") names, imported from the Python path or from
    `directory` (the working directory of the run), and its module's source file."""
    if not TERM_PATTERN.match(term):
        raise CustomTermError(f"mitigation {mitigation!r}: term {term!r} is not of the form module:Class")
    module_name, class_name = term.split(":")
    folder = str(Path(directory).resolve())
    if folder not in sys.path:
        sys.path.append(folder)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and not module_name.startswith(error.name):
            raise CustomTermError(
                f"mitigation {mitigation!r}: importing {module_name!r} failed: it imports {error.name!r}, which "
                "is not installed"
            ) from error
        raise CustomTermError(
            f"mitigation {mitigation!r}: cannot import {module_name!r} ({error}); the module must be on the "
            f"Python path or a file {module_name.replace('.', '/')}.py in the working directory {folder}"
        ) from error
    except Exception as error:
        raise CustomTermError(
            f"mitigation {mitigation!r}: importing {module_name!r} failed: {type(error).__name__}: {error}"
        ) from error
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls):
        raise CustomTermError(f"mitigation {mitigation!r}: module {module_name!r} has no class {class_name!r}")
    source = inspect.getsourcefile(module)
    if source is None:
        raise CustomTermError(f"mitigation {mitigation!r}: module {module_name!r} has no source file to record")
    return cls, Path(source)


def planned_term_sha256(
    mitigation: str, term: str, concept: str, parameters: dict[str, Any], directory: Path = Path(".")
) -> str:
    """Import `term` and build it as planning checks it (classifier-free scale 7.5); the
    sha256 of its module's source file."""
    cls, source = load_term_class(mitigation, term, directory)
    build_term(mitigation, term, cls, concept, PLAN_GUIDANCE_SCALE, parameters)
    return sha256_of(source)


def build_term(mitigation: str, term: str, cls: type, concept: str, guidance_scale: float, parameters: dict[str, Any]):
    """An instance of `term`'s class `cls`, checked against the guidance-term protocol."""
    from i2peval.generation.guidance import Branch

    try:
        instance = cls(concept=concept, guidance_scale=guidance_scale, **parameters)
    except Exception as error:
        raise CustomTermError(
            f"mitigation {mitigation!r}: {term}(concept=..., guidance_scale=..., "
            f"{', '.join(f'{key}=...' for key in parameters)}) failed: {type(error).__name__}: {error}"
        ) from error
    branches = getattr(instance, "branches", None)
    if not isinstance(branches, tuple) or not branches or not all(isinstance(b, Branch) for b in branches):
        raise CustomTermError(
            f"mitigation {mitigation!r}: {term} does not implement the guidance-term protocol: its branches must "
            f"be a non-empty tuple of i2peval.generation.guidance.Branch, not {branches!r}"
        )
    contribution = getattr(instance, "contribution", None)
    if not callable(contribution) or len(inspect.signature(contribution).parameters) != 4:
        raise CustomTermError(
            f"mitigation {mitigation!r}: {term} does not implement the guidance-term protocol: it needs a method "
            "contribution(predictions, base, step, state)"
        )
    return instance


def verified_term(
    mitigation: str, term: str, recorded_sha256: str, directory: Path = Path("."), **arguments: Any
):
    """`build_term` of a module whose source still has the sha256 the plan recorded."""
    cls, source = load_term_class(mitigation, term, directory)
    found = sha256_of(source)
    if found != recorded_sha256:
        raise CustomTermError(
            f"mitigation {mitigation!r}: {source} changed since the workflow was planned (sha256 {found}, "
            f"recorded {recorded_sha256}): run the workflow again, which plans this mitigation's images anew"
        )
    return build_term(mitigation, term, cls, **arguments)
