"""The configuration as the workflow and the command line read it (config.py)."""

import copy
from pathlib import Path

import yaml

from i2peval.config import validate_config
from i2peval.execution import ExecutionSettings, SpeedOptions
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
    config["prompt_sets"]["i2p"]["hub"] = {"revision": "main"}
    validate_config(config)



def test_one_prompt_set_or_several_never_both():
    import pytest

    from i2peval.config import ConfigError

    both = {**copy.deepcopy(DEMO), "prompts": {"source": "demo"}}
    with pytest.raises(ConfigError, match="give prompts .* or prompt_sets .*, not both"):
        validate_config(both)
    neither = {key: value for key, value in copy.deepcopy(DEMO).items() if key != "prompt_sets"}
    with pytest.raises(ConfigError, match="give prompts .* or prompt_sets .*, one of them"):
        validate_config(neither)
    badly_named = copy.deepcopy(DEMO)
    badly_named["prompt_sets"]["Nudity Set"] = badly_named["prompt_sets"].pop("erasure-copy")
    with pytest.raises(ConfigError, match="prompt_sets: 'Nudity Set' does not match"):
        validate_config(badly_named)
    misplaced = copy.deepcopy(DEMO)
    misplaced["prompt_sets"]["erasure-copy"]["columns"] = "esd"
    with pytest.raises(ConfigError, match="prompt_sets.erasure-copy.columns: read only when prompt_sets.erasure-copy"):
        validate_config(misplaced)


def test_each_prompt_set_is_a_study_with_its_own_folder_and_the_rest_shared():
    studies = Study.of_every_set(validate_config(copy.deepcopy(DEMO)))
    assert list(studies) == ["i2p", "erasure-copy"]
    i2p, erasure = studies.values()
    assert (i2p.setdir, erasure.setdir) == ("", "sets/erasure-copy/")
    assert (i2p.report_path, erasure.report_path) == ("results/report.html", "results/sets/erasure-copy/report.html")
    assert erasure.metrics_table == "results/sets/erasure-copy/metrics/metrics.parquet"
    assert [job.path("{setdir}") for job in erasure.image_jobs()] == ["sets/erasure-copy/"] * len(erasure.image_jobs())
    assert erasure.prompt_count == 3 and i2p.prompt_count == 20
    assert erasure.models == {"tiny-a": i2p.models["tiny-a"]}  # the set's own choice of the configured
    assert list(erasure.mitigations) == ["none", "sld-strong"]
    # a study with one set keeps the layout it had before sets: its jobs' params are unchanged
    assert "setdir" not in i2p.image_layout() and erasure.image_layout()["setdir"] == "sets/erasure-copy/"


def test_a_prompt_set_made_with_some_models_and_mitigations_names_an_unknown_one():
    import pytest

    from i2peval.plan import PlanError

    config = validate_config(copy.deepcopy(DEMO))
    erasure = Study.from_config(config, prompt_set="erasure-copy")
    assert list(erasure.models) == ["tiny-a"] and list(erasure.mitigations) == ["none", "sld-strong"]
    assert erasure.conditions() == [("tiny-a", "none"), ("tiny-a", "sld-strong")]
    assert erasure.baseline == "none" and len(erasure.image_jobs()) == 2
    config["prompt_sets"]["erasure-copy"]["models"] = ["tiny-a", "tiny-b"]
    with pytest.raises(PlanError, match="prompt_sets.erasure-copy.models: 'tiny-b' not among the configured models"):
        Study.from_config(config, prompt_set="erasure-copy")


def test_the_execution_section_gives_the_jobs_settings_and_speed_options():
    config = copy.deepcopy(DEMO)
    config["execution"].update(fuse_qkv=True, generate_batch_size="auto")
    execution = ExecutionSettings(**validate_config(config)["execution"])
    assert execution.speed == SpeedOptions(fuse_qkv=True)
    assert execution.generate_batch_size == "auto"
    assert ExecutionSettings(**validate_config(copy.deepcopy(DEMO))["execution"]).speed == SpeedOptions()
