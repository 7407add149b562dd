"""The study's configuration: read, and validated against the schema that ships in the package.

The schema (``data/config.schema.yaml``) documents every key and holds the defaults; the
workflow validates with it too.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from i2peval.errors import I2PEvalError

CONFIG_SCHEMA = files("i2peval") / "data" / "config.schema.yaml"


class ConfigError(I2PEvalError):
    """A configuration that cannot be read or does not follow the schema."""


def validate_config(config: dict[str, Any], source: str | Path = "the configuration") -> dict[str, Any]:
    """`config` validated against the schema, its defaults filled in (in place, as Snakemake's
    `validate` does); `ConfigError` naming `source` and the first problem."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, str(CONFIG_SCHEMA), set_default=True)
    except WorkflowError as error:
        raise ConfigError(f"{source}: {str(error).splitlines()[0]}") from None
    return config


def load_config(path: Path) -> dict[str, Any]:
    """The configuration in `path`, validated, with the schema's defaults."""
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read the configuration ({error})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a configuration is a mapping of sections, found {type(config).__name__}")
    return validate_config(config, path)
