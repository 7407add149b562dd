"""Guidance terms of the user's own (mitigation kind custom): the README's example runs as
it is written, through the engine (and through the workflow, with an erased model, in
tests/test_overrides.py); what cannot run is refused when the workflow is planned, naming
why."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from workflow_runs import DEMO_CONFIG, REPO, snakemake, write_config

from i2peval.config import ConfigError, validate_config
from i2peval.generation.custom_terms import CustomTermError, verified_term
from i2peval.generation.engine import Engine
from i2peval.generation.latent_models import load_latent_model
from i2peval.generation.mitigations import HARNESS_CONCEPT, MitigationError, resolve_mitigation
from i2peval.hub import sha256_of
from i2peval.study import Study


def readme_example() -> tuple[str, dict]:
    """The README's example module and the mitigations of its configuration, as written."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### A guidance term of your own"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    mitigations = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.DOTALL).group(1))["mitigations"]
    return code, mitigations


def example_in(folder: Path, module: str) -> dict:
    """The README's module saved as `module`.py in `folder`; its custom mitigation's entry
    pointing at it (a module name per test: Python imports a name once per process)."""
    code, mitigations = readme_example()
    (folder / f"{module}.py").write_text(code)
    entry = dict(mitigations["away-from-weapons"])
    entry["term"] = entry["term"].replace("away_from_concept", module)
    return entry


def test_the_readme_example_is_a_custom_mitigation_with_its_module_recorded(tmp_path):
    entry = example_in(tmp_path, "away_recorded")
    mitigation = resolve_mitigation("away", entry, HARNESS_CONCEPT, tmp_path)
    assert mitigation.settings() == {
        "kind": "custom", "preset": None, "concept": HARNESS_CONCEPT,
        "parameters": {"scale": 3.0, "second_concept": "weapons, guns, knives", "warmup_steps": 2},
        "long_prompts": "truncate", "term": "away_recorded:AwayFromConcept",
        "term_sha256": sha256_of(tmp_path / "away_recorded.py"),
    }
    (difference,) = mitigation.harness_differences()
    assert difference.deviation.startswith("custom guidance term away_recorded:AwayFromConcept (module sha256 ")
    assert mitigation.published_condition() is None
    assert resolve_mitigation("none", {"kind": "none"}, HARNESS_CONCEPT).settings().keys() == {
        "kind", "preset", "concept", "parameters", "long_prompts",
    }  # the built-in kinds' settings, and so every run's params, are as before


def test_the_readme_example_steers_images_batch_invariantly(tiny_sd_snapshot, tmp_path):
    entry = example_in(tmp_path, "away_engine")
    model = load_latent_model(tiny_sd_snapshot, torch.float32, torch.device("cpu"))
    plain = resolve_mitigation("none", {"kind": "none"}, HARNESS_CONCEPT)
    custom = resolve_mitigation("away", entry, HARNESS_CONCEPT, tmp_path)
    prompts, seeds = ["a red apple on a wooden table", "a storm over a dark sea"], [3, 4]

    def images(mitigation, chosen_prompts, chosen_seeds):
        engine = Engine.for_mitigation(model, mitigation, 7.5)
        made = engine.generate(chosen_prompts, chosen_seeds, 32, 32, 6)
        return np.stack([np.asarray(image.image) for image in made]).astype(int)

    steered = images(custom, prompts, seeds)
    assert np.abs(steered - images(plain, prompts, seeds)).max() > 0
    assert np.array_equal(steered[1:], images(custom, prompts[1:], seeds[1:]))
    no_push = resolve_mitigation("away", {**entry, "parameters": {**entry["parameters"], "scale": 0.0}},
                                 HARNESS_CONCEPT, tmp_path)
    assert np.array_equal(images(no_push, prompts, seeds), images(plain, prompts, seeds))


NOT_A_TERM = '''
class NoBranches:
    def __init__(self, concept, guidance_scale):
        pass

    def contribution(self, predictions, base, step, state):
        return None


class FixedArguments:
    def __init__(self, concept, guidance_scale):
        self.branches = ()


def helper():
    pass
'''


@pytest.mark.parametrize(
    ("term", "parameters", "message"),
    [
        ("nowhere_to_be_found:Term", {}, r"cannot import 'nowhere_to_be_found' .*a file nowhere_to_be_found\.py in "
                                         r"the working directory"),
        ("not_a_term:Missing", {}, "module 'not_a_term' has no class 'Missing'"),
        ("not_a_term:helper", {}, "module 'not_a_term' has no class 'helper'"),
        ("not_a_term:NoBranches", {}, "does not implement the guidance-term protocol: its branches must be"),
        ("not_a_term:FixedArguments", {"scale": 2.0}, r"FixedArguments\(concept=\.\.\., guidance_scale=\.\.\., "
                                                      r"scale=\.\.\.\) failed: TypeError"),
        ("broken_term:Term", {}, "importing 'broken_term' failed: ZeroDivisionError"),
    ],
)
def test_a_term_that_cannot_run_is_refused_naming_why(tmp_path, term, parameters, message):
    (tmp_path / "not_a_term.py").write_text(NOT_A_TERM)
    (tmp_path / "broken_term.py").write_text("1 / 0\n")
    with pytest.raises(CustomTermError, match=message):
        resolve_mitigation("mine", {"kind": "custom", "term": term, "parameters": parameters}, HARNESS_CONCEPT,
                           tmp_path)


def test_custom_keys_belong_to_the_custom_kind_alone(tmp_path):
    with pytest.raises(MitigationError, match="term and parameters belong to kind custom, not sega"):
        resolve_mitigation("x", {"kind": "sega", "preset": "strong", "term": "a:B", "parameters": {}}, "c")
    with pytest.raises(MitigationError, match="kind custom takes no preset"):
        resolve_mitigation("x", {"kind": "custom", "term": "a:B", "preset": "strong"}, "c")
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["mitigations"] = {"mine": {"kind": "custom"}}
    with pytest.raises(ConfigError, match="mitigations.mine: 'term' is a required property"):
        validate_config(config)
    config["mitigations"] = {"mine": {"kind": "custom", "term": "no colon"}}
    with pytest.raises(ConfigError, match="mitigations.mine.term: 'no colon' does not match"):
        validate_config(config)


def test_a_job_refuses_a_module_changed_since_the_plan(tmp_path):
    entry = example_in(tmp_path, "away_changed")
    mitigation = resolve_mitigation("away", entry, HARNESS_CONCEPT, tmp_path)
    (tmp_path / "away_changed.py").write_text((tmp_path / "away_changed.py").read_text() + "# edited\n")
    with pytest.raises(CustomTermError, match=r"away_changed\.py changed since the workflow was planned"):
        verified_term("away", mitigation.term, mitigation.term_sha256, tmp_path, concept=mitigation.concept,
                      guidance_scale=7.5, parameters=mitigation.parameters)


def test_planning_stops_on_a_term_that_cannot_be_imported(tmp_path):
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["mitigations"]["mine"] = {"kind": "custom", "term": "no_such_module_here:Term"}
    result = snakemake(tmp_path / "run", write_config(tmp_path / "config.yaml", config), "--dry-run")
    assert result.returncode != 0
    assert "mitigation 'mine': cannot import 'no_such_module_here'" in result.stdout + result.stderr


def test_the_study_reads_the_term_from_its_run_directory(tmp_path):
    entry = example_in(tmp_path, "away_study")
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["mitigations"] = {"none": {"kind": "none"}, "away": entry}
    study = Study.from_config(validate_config(config), tmp_path)
    assert study.mitigations["away"].term_sha256 == sha256_of(tmp_path / "away_study.py")
