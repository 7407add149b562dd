"""The study's configuration: read, and validated against the schema that ships in the package.

The schema (``data/config.schema.yaml``) documents every key and holds the defaults; the
workflow validates with it too. A configuration file is read strictly: a key written
twice in one mapping is an error naming both lines (YAML loaders keep the last one and
say nothing), and a syntax error names its line.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from i2peval.errors import I2PEvalError
from i2peval.plan import I2P_SET

CONFIG_SCHEMA = files("i2peval") / "data" / "config.schema.yaml"


@cache
def config_schema() -> dict[str, Any]:
    """The configuration schema, read once per process (libyaml's loader where installed:
    the workflow reads it each time it plans)."""
    return yaml.load(CONFIG_SCHEMA.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506


class ConfigError(I2PEvalError):
    """A configuration that cannot be read or does not follow the schema."""


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key written twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in lines:
                raise ConfigError(
                    f"{key_node.start_mark.name}: key {key!r} is written twice in one mapping, on lines "
                    f"{lines[key]} and {line}; YAML would keep the second silently: keep one"
                )
            lines[key] = line
        return super().construct_mapping(node, deep)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML configuration file; `ConfigError` naming the file (and the line
    of a syntax error or of a key written twice)."""
    try:
        with open(path, encoding="utf-8") as stream:
            config = yaml.load(stream, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{path}: not valid YAML at {where}{error.problem or error.context}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read the configuration ({error})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a configuration is a mapping of sections, found {type(config).__name__}")
    return config


def check_config_files(paths: Iterable[str | Path]) -> None:
    """Read each configuration file strictly (`read_config_file`): for the files Snakemake
    has already read with a loader that keeps the last of two equal keys."""
    for path in paths:
        read_config_file(path)


def validate_config(config: dict[str, Any], source: str | Path = "the configuration") -> dict[str, Any]:
    """`config` validated against the schema, its defaults filled in and its whole numbers
    written as integers (in place, as Snakemake's `validate` does); `ConfigError` naming
    `source`, the key and what is wrong with it."""
    from jsonschema.exceptions import best_match

    error = best_match(filling_validator()(config_schema()).iter_errors(config))
    if error is not None:
        key = ".".join(str(part) for part in error.absolute_path) or "the top level"
        raise ConfigError(f"{source}: {key}: {error.message}")
    if ("prompts" in config) == ("prompt_sets" in config):
        raise ConfigError(
            f"{source}: give prompts (the study's one prompt set) or prompt_sets (several, by name), "
            f"{'not both' if 'prompts' in config else 'one of them'}"
        )
    check_source_keys(config, source)
    return config


@cache
def filling_validator() -> type:
    """A JSON Schema validator that, before checking an object's properties, fills in each
    missing one that has a default (a copy of it) and writes a whole number given as a float
    (``seed: 0.0``, which the schema's integer type admits) as the integer: otherwise it would
    name another model folder and other params than the integer, and make every image again."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def properties(validator, properties, instance, schema):
        if validator.is_type(instance, "object"):
            for name, child in properties.items():
                value = instance.get(name)
                if "default" in child and name not in instance:
                    instance[name] = copy.deepcopy(child["default"])
                elif isinstance(value, float) and value.is_integer() and child.get("type") == "integer":
                    instance[name] = int(value)
        yield from check_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": properties})


def default_prompt_set(config: dict[str, Any]) -> str:
    """The prompt set a command measures unless told which: i2p where there is one (a
    configuration's key order does not decide it), else the first."""
    sections = prompt_set_sections(config)
    return I2P_SET if I2P_SET in sections else next(iter(sections))


def prompt_set_sections(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each prompt set's section of a validated configuration, by name: ``prompt_sets``, or
    ``prompts`` as the one set named i2p."""
    return config["prompt_sets"] if "prompt_sets" in config else {I2P_SET: config["prompts"]}


def schema_default(spec: dict[str, Any]) -> Any:
    """What validation fills in for a key of schema `spec` that is not given (None: nothing)."""
    if "default" not in spec or not isinstance(spec["default"], dict):
        return spec.get("default")
    value = dict(spec["default"])
    for key, child in spec.get("properties", {}).items():
        if key not in value and (default := schema_default(child)) is not None:
            value[key] = default
    return value


def check_source_keys(config: dict[str, Any], source: str | Path) -> None:
    """`ConfigError` for a key the schema marks ``x-source`` (read only when its section's
    source is that one) set to anything but its default while the section's source is
    another: it would be ignored. Run on the validated configuration (defaults filled in)."""
    schema = config_schema()
    sections = [(name, config.get(name), spec) for name, spec in schema["properties"].items()]
    sections += [
        (f"prompt_sets.{name}", section, schema["$defs"]["prompt_set"])
        for name, section in config.get("prompt_sets", {}).items()
    ]
    for section, given, spec in sections:
        if "$ref" in spec:
            spec = schema["$defs"][spec["$ref"].rsplit("/", 1)[-1]]
        properties = spec.get("properties", {})
        if not isinstance(given, dict) or "source" not in properties:
            continue
        chosen = given.get("source")
        for key, value in given.items():
            wanted = properties.get(key, {}).get("x-source")
            if wanted is not None and wanted != chosen and value != schema_default(properties[key]):
                raise ConfigError(
                    f"{source}: {section}.{key}: read only when {section}.source is {wanted}, but it is {chosen}: "
                    f"remove it, or set {section}.source: {wanted}"
                )


def load_config(path: Path) -> dict[str, Any]:
    """The configuration in `path`, validated, with the schema's defaults."""
    return validate_config(read_config_file(path), path)
