"""The configuration as the workflow and the command line read it (config.py)."""

import copy
from pathlib import Path

import yaml

from i2peval.config import validate_config
from i2peval.study import Study

DEMO = yaml.safe_load((Path(__file__).parent.parent / "demo" / "config.yaml").read_text())


def test_whole_numbers_written_as_floats_are_the_integers_and_rerun_nothing():
    written = copy.deepcopy(DEMO)
    written["models"]["tiny-a"]["seed"] = 0.0  # e.g. a configuration written by a script
    written["generation"]["steps"] = 8.0
    written["mitigations"]["sega-strong"]["overrides"]["edit_warmup_steps"] = 2.0
    config = validate_config(written)
    assert config["models"]["tiny-a"]["seed"] == 0 and isinstance(config["models"]["tiny-a"]["seed"], int)
    assert isinstance(config["mitigations"]["sega-strong"]["overrides"]["edit_warmup_steps"], int)
    as_written, as_integers = Study.from_config(config), Study.from_config(validate_config(copy.deepcopy(DEMO)))
    assert as_written.models["tiny-a"].folder == as_integers.models["tiny-a"].folder
    assert as_written.generation_params("tiny-a") == as_integers.generation_params("tiny-a")
    assert as_written.settings() == as_integers.settings()
    kept = validate_config({**copy.deepcopy(DEMO), "generation": {"guidance_scale": 7.0}})
    assert isinstance(kept["generation"]["guidance_scale"], float)  # a number key keeps its float


def test_a_sources_own_keys_given_at_their_defaults_for_another_source_are_accepted():
    config = copy.deepcopy(DEMO)
    config["nudenet2"]["checkpoint"] = {}
    config["prompts"]["hub"] = {"revision": "main"}
    validate_config(config)

