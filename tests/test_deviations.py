"""The report's deviation list: faithful defaults add nothing, every departure is named."""


import pytest

from i2peval.config import validate_config
from i2peval.report.deviations import ALWAYS, protocol_deviations
from i2peval.study import Study

SD = {"source": "hub", "repo_id": "CompVis/stable-diffusion-v1-4", "revision": "main", "resolution": 512}
SDXL = {"source": "hub", "repo_id": "stabilityai/stable-diffusion-xl-base-1.0", "revision": "main", "resolution": 1024}


def study(**changes):
    """The study of a configuration with the schema's defaults: the harness's settings."""
    config = {
        "prompts": {"source": "hub"},
        "models": {"sd-1.4": dict(SD)},
        "mitigations": {
            "none": {"kind": "none"},
            "negative-prompt": {"kind": "negative_prompt"},
            "sega-strong": {"kind": "sega", "preset": "strong"},
            "sld-strong": {"kind": "sld", "preset": "strong"},
        },
        "degenerate_images": {"policy": "judged"},
        **changes,
    }
    return Study.from_config(validate_config(config))


def test_the_harness_settings_add_no_deviation():
    assert protocol_deviations(study(), {"sd-1.4": {"architecture": "sd"}}) == list(ALWAYS)


def test_explicit_harness_values_are_no_deviation():
    config = study(generation={"steps": 50, "guidance_scale": 7.5, "prompt_cleaning": "ftfy"})
    assert protocol_deviations(config) == list(ALWAYS)


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"generation": {"prompt_cleaning": "none"}}, "not cleaned with ftfy.fix_text"),
        ({"generation": {"guidance_scale": 5.0}}, "Guidance scale 5.0 instead of 7.5"),
        (
            {"mitigations": {"sega": {"kind": "sega", "preset": "max", "long_prompts": "truncate"}}},
            "Mitigation sega: prompts over 77 tokens are tokenized by 'truncate', the harness's sega runs by 'cut'",
        ),
        (
            {"mitigations": {"sld": {"kind": "sld", "preset": "max", "concept": "hate, harassment"}}},
            "Mitigation sld: concept 'hate, harassment' instead of the harness's",
        ),
        ({"concept": "violence"}, "Concept text 'violence' instead of the harness's"),
        ({"degenerate_images": {"policy": "exclude"}}, "left out of the metrics"),
        ({"degenerate_images": {"policy": "inappropriate"}}, "counted as inappropriate"),
    ],
)
def test_each_departure_is_named(changes, named):
    deviations = protocol_deviations(study(**changes))
    assert [note for note in deviations if named in note], deviations


def test_an_sdxl_model_is_named_as_not_in_the_paper():
    config = study(models={"sd-1.4": dict(SD), "sdxl": dict(SDXL)})
    deviations = protocol_deviations(config, {"sd-1.4": {"architecture": "sd"}, "sdxl": {"architecture": "sdxl"}})
    assert [note for note in deviations if note.startswith("Model sdxl is an SDXL model")]
    assert not [note for note in deviations if "sd-1.4" in note]


def test_judges_in_another_dtype_are_named_and_only_the_torch_judges():
    deviations = protocol_deviations(study(judge_dtype="bfloat16"))
    named = [note for note in deviations if "judge_dtype" in note]
    assert named == [
        "Judges Q16, CLIPScore, safety checker computed their CLIP embeddings in bfloat16 (judge_dtype); "
        "the harness computed them in float32."
    ]
    detectors_only = study(
        judge_dtype="float16",
        judges=["nudenet3"],
        judge_profiles={"nudity": {"nudenet3": {"labels": ["ANUS_EXPOSED"], "threshold": 0.5}}},
        primary_profile="nudity",
    )
    assert not [note for note in protocol_deviations(detectors_only) if "dtype" in note]
    assert detectors_only.classify_dtype == "float32"  # what the classify jobs get: none of them reruns
