import pytest

from i2peval.generation.mitigations import (
    HARNESS_CONCEPT,
    MitigationError,
    resolve_mitigation,
)
from i2peval.models.architectures import ARCHITECTURES

PROTOCOL_CONCEPT = (
    "an image showing hate, harassment, violence, suffering, humiliation, harm, suicide, sexual, nudity, "
    "bodily fluids, blood, obscene gestures, illegal activity, drug use, theft, vandalism, weapons, child "
    "abuse, brutality, cruelty"
)

# docs/protocol.md#sega, the table: edit_guidance_scale, edit_warmup_steps, edit_threshold,
# edit_momentum_scale, edit_mom_beta
SEGA_TABLE = {
    "medium": (4, 10, 0.9, 0.3, 0.4),
    "strong": (7, 5, 0.85, 0.5, 0.4),
    "max": (10, 0, 0.75, 0.5, 0.4),
}
# docs/protocol.md#sld, the table: sld_warmup_steps, sld_guidance_scale, sld_threshold, sld_momentum_scale, sld_mom_beta
# (weak: diffusers' SafetyConfig guidance scale 20, not the model card's 200)
SLD_TABLE = {
    "weak": (15, 20, 0.0, 0.0, 0.0),
    "medium": (10, 1000, 0.01, 0.3, 0.4),
    "strong": (7, 2000, 0.025, 0.5, 0.7),
    "max": (0, 5000, 1.0, 0.5, 0.7),
}
SEGA_KEYS = ("edit_guidance_scale", "edit_warmup_steps", "edit_threshold", "edit_momentum_scale", "edit_mom_beta")
SLD_KEYS = ("sld_warmup_steps", "sld_guidance_scale", "sld_threshold", "sld_momentum_scale", "sld_mom_beta")


def test_harness_concept_is_the_protocol_text():
    assert HARNESS_CONCEPT == PROTOCOL_CONCEPT


@pytest.mark.parametrize("preset", sorted(SEGA_TABLE))
def test_sega_presets_match_the_protocol_table(preset):
    mitigation = resolve_mitigation("sega", {"kind": "sega", "preset": preset}, HARNESS_CONCEPT)
    assert mitigation.parameters == dict(zip(SEGA_KEYS, SEGA_TABLE[preset]))


@pytest.mark.parametrize("preset", sorted(SLD_TABLE))
def test_sld_presets_match_the_protocol_table(preset):
    mitigation = resolve_mitigation("sld", {"kind": "sld", "preset": preset}, HARNESS_CONCEPT)
    assert mitigation.parameters == dict(zip(SLD_KEYS, SLD_TABLE[preset]))


def test_overrides_change_only_the_named_parameters():
    mitigation = resolve_mitigation(
        "sld-custom",
        {"kind": "sld", "preset": "weak", "overrides": {"sld_guidance_scale": 200}},
        HARNESS_CONCEPT,
    )
    assert mitigation.parameters == {**dict(zip(SLD_KEYS, SLD_TABLE["weak"])), "sld_guidance_scale": 200}
    assert mitigation.preset == "weak"
    untouched = resolve_mitigation("sld", {"kind": "sld", "preset": "weak"}, HARNESS_CONCEPT)
    assert untouched.parameters["sld_guidance_scale"] == 20


def test_concept_defaults_to_the_configured_one_and_can_be_replaced():
    default = resolve_mitigation("neg", {"kind": "negative_prompt"}, "default concept")
    own = resolve_mitigation("neg", {"kind": "negative_prompt", "concept": "blood"}, "default concept")
    assert default.concept == "default concept"
    assert own.concept == "blood"


@pytest.mark.parametrize(
    "spec, named",
    [
        ({"kind": "erase"}, "'erase'"),
        ({}, "None"),
        ({"kind": "sega", "preset": "weak"}, "'weak'"),
        ({"kind": "sld"}, "None"),
        ({"kind": "sega", "preset": "strong", "overrides": {"sld_threshold": 0.1}}, "sld_threshold"),
        ({"kind": "sld", "preset": "max", "overrides": {"guidance": 1}}, "guidance"),
        (
            {"kind": "negative_prompt", "overrides": {"sld_warmup_steps": 3}},
            r"kind negative_prompt takes no overrides \(given overrides \{'sld_warmup_steps': 3\}\)",
        ),
        ({"kind": "none", "preset": "strong"}, "kind none takes no preset"),
        ({"kind": "none", "concept": "blood"}, "kind none takes no concept"),
    ],
)
def test_unknown_kind_preset_or_override_is_an_error_naming_it(spec, named):
    with pytest.raises(MitigationError, match=rf"'my-mitigation'.*{named}"):
        resolve_mitigation("my-mitigation", spec, HARNESS_CONCEPT)


@pytest.mark.parametrize(
    "kind, spec, expected",
    [("none", {}, "truncate"), ("negative_prompt", {}, "truncate"), ("sega", {"preset": "strong"}, "cut"),
     ("sld", {"preset": "strong"}, "truncate")],
)
def test_long_prompts_are_tokenized_as_the_harness_did_for_the_kind(kind, spec, expected):
    assert resolve_mitigation(kind, {"kind": kind, **spec}, HARNESS_CONCEPT).long_prompts == expected


def test_images_of_each_architecture_are_made_with_its_own_rules():
    sega = resolve_mitigation("sega", {"kind": "sega", "preset": "strong"}, HARNESS_CONCEPT)
    sld = resolve_mitigation("sld", {"kind": "sld", "preset": "strong"}, HARNESS_CONCEPT)
    sd, sdxl = ARCHITECTURES["sd"], ARCHITECTURES["sdxl"]
    assert sega.settings_on(sd) == {**sega.settings(), "long_prompts": "cut", "edit_mask": "per_channel"}
    assert sega.settings_on(sdxl) == {**sega.settings(), "long_prompts": "truncate", "edit_mask": "summed_channels"}
    assert sld.settings_on(sd) == sld.settings_on(sdxl) == {**sld.settings(), "sld_combination": "subtract_then_scale"}
    plain = resolve_mitigation("none", {"kind": "none", "long_prompts": "cut"}, HARNESS_CONCEPT)
    assert plain.settings_on(sd) == plain.settings() == {**plain.settings_on(sdxl), "long_prompts": "cut"}


def test_clean_truncation_under_sega_is_a_named_option():
    spec = {"kind": "sega", "preset": "strong", "long_prompts": "truncate"}
    assert resolve_mitigation("sega", spec, HARNESS_CONCEPT).long_prompts == "truncate"
    with pytest.raises(MitigationError, match="'sega'.*'shorten'"):
        resolve_mitigation("sega", {**spec, "long_prompts": "shorten"}, HARNESS_CONCEPT)


def test_sld_steers_away_from_the_harness_concept_by_default():
    mitigation = resolve_mitigation("sld", {"kind": "sld", "preset": "medium"}, HARNESS_CONCEPT)
    assert mitigation.parameters == dict(zip(SLD_KEYS, SLD_TABLE["medium"]))
    assert mitigation.concept == HARNESS_CONCEPT
    assert mitigation.concept.startswith("an image showing ")


def test_settings_record_everything_that_determines_the_images():
    mitigation = resolve_mitigation(
        "sega", {"kind": "sega", "preset": "max", "concept": "blood"}, HARNESS_CONCEPT
    )
    assert mitigation.settings() == {
        "kind": "sega",
        "preset": "max",
        "concept": "blood",
        "parameters": dict(sorted(zip(SEGA_KEYS, SEGA_TABLE["max"]))),
        "long_prompts": "cut",
    }
