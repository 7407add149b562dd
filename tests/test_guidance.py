"""Guidance terms one by one, on made-up predictions (test_guidance_equivalence.py runs them on a model)."""

import pytest
import torch

from i2peval.generation.guidance import (
    PROMPT,
    UNCONDITIONAL,
    ClassifierFree,
    Guidance,
    SafeLatentDiffusion,
    SemanticGuidance,
    TermState,
    concept_branch,
    guidance_for,
)
from i2peval.generation.mitigations import HARNESS_CONCEPT, resolve_mitigation
from i2peval.models.architectures import ARCHITECTURES

CONCEPT = concept_branch(HARNESS_CONCEPT)
SD, SDXL = ARCHITECTURES["sd"], ARCHITECTURES["sdxl"]


def predictions(batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        branch: torch.randn((batch, 4, 8, 8), generator=generator)
        for branch in (UNCONDITIONAL, PROMPT, CONCEPT)
    }


def sega(**changes):
    parameters = {
        "concept": HARNESS_CONCEPT,
        "edit_guidance_scale": 7,
        "edit_warmup_steps": 5,
        "edit_threshold": 0.85,
        "edit_momentum_scale": 0.5,
        "edit_mom_beta": 0.4,
    }
    return SemanticGuidance(**{**parameters, **changes})


def sld(**changes):
    parameters = {
        "concept": HARNESS_CONCEPT,
        "sld_guidance_scale": 2000,
        "sld_warmup_steps": 7,
        "sld_threshold": 0.025,
        "sld_momentum_scale": 0.5,
        "sld_mom_beta": 0.7,
    }
    return SafeLatentDiffusion(**{**parameters, **changes})


def mitigation(kind, **spec):
    return resolve_mitigation(kind, {"kind": kind, **spec}, HARNESS_CONCEPT)


def test_classifier_free_guidance_moves_from_the_negative_branch_towards_the_prompt():
    predicted = predictions()
    guidance = Guidance(ClassifierFree(7.5))
    guided = guidance.combine(predicted, step=0, states=guidance.start())
    expected = predicted[UNCONDITIONAL] + 7.5 * (predicted[PROMPT] - predicted[UNCONDITIONAL])
    assert torch.allclose(guided, expected)


def test_negative_prompt_conditions_the_unconditional_branch_on_the_concept():
    guidance = guidance_for(mitigation("negative_prompt"), 7.5, SD)
    assert guidance.branches == (CONCEPT, PROMPT)
    predicted = predictions()
    guided = guidance.combine(predicted, step=0, states=guidance.start())
    assert torch.allclose(guided, predicted[CONCEPT] + 7.5 * (predicted[PROMPT] - predicted[CONCEPT]))


@pytest.mark.parametrize(
    "kind, spec, branches",
    [
        ("none", {}, (UNCONDITIONAL, PROMPT)),
        ("sega", {"preset": "strong"}, (UNCONDITIONAL, PROMPT, CONCEPT)),
        ("sld", {"preset": "strong"}, (UNCONDITIONAL, PROMPT, CONCEPT)),
    ],
)
def test_each_mitigation_asks_for_the_branches_it_reads_once(kind, spec, branches):
    assert guidance_for(mitigation(kind, **spec), 7.5, SD).branches == branches


@pytest.mark.parametrize(
    "kind, spec", [("sega", {"preset": "max"}), ("sld", {"preset": "max"}), ("negative_prompt", {})]
)
def test_without_classifier_free_guidance_nothing_guides(kind, spec):
    # diffusers' pipelines apply SEGA, SLD and the negative prompt only inside classifier-free guidance
    guidance = guidance_for(mitigation(kind, **spec), 1.0, SD)
    assert guidance.branches == (PROMPT,)
    predicted = predictions()
    assert torch.equal(guidance.combine(predicted, 0, guidance.start()), predicted[PROMPT])


def test_sega_at_scale_zero_and_sld_at_scale_one_or_less_are_plain_guidance():
    plain = guidance_for(mitigation("none"), 7.5, SD)
    sega_zero = mitigation("sega", preset="strong", overrides={"edit_guidance_scale": 0})
    sld_one = mitigation("sld", preset="strong", overrides={"sld_guidance_scale": 1})
    assert guidance_for(sega_zero, 7.5, SD) == plain
    assert guidance_for(sld_one, 7.5, SD) == plain


def test_sega_term_at_scale_zero_contributes_nothing_even_after_warmup():
    term, state = sega(edit_guidance_scale=0, edit_warmup_steps=0), TermState()
    for step in range(3):
        predicted = predictions(seed=step)
        assert not term.contribution(predicted, predicted[UNCONDITIONAL], step, state).any()


def test_sega_keeps_the_largest_quarter_of_each_channel_at_threshold_0_75():
    term = sega(edit_threshold=0.75, edit_warmup_steps=0, edit_momentum_scale=0)
    predicted = predictions()
    edit = term.contribution(predicted, predicted[UNCONDITIONAL], 0, TermState())
    kept = (edit != 0).flatten(start_dim=2).sum(dim=2)
    assert kept.tolist() == [[16] * 4] * 2  # 25 % of 8 x 8 per image and channel
    # reverse direction: away from the concept
    reverse = -(predicted[CONCEPT] - predicted[UNCONDITIONAL]) * 7
    assert torch.equal(edit[edit != 0], reverse[edit != 0])


@pytest.mark.parametrize("make_term", [sega, sld])
def test_momentum_builds_during_warmup_and_the_term_acts_after_it(make_term):
    term, state = make_term(), TermState()
    warmup = getattr(term, "edit_warmup_steps", None) or term.sld_warmup_steps
    for step in range(warmup):
        predicted = predictions(seed=step)
        assert term.contribution(predicted, predicted[UNCONDITIONAL], step, state) is None
        assert state.momentum is not None and state.momentum.any()
    predicted = predictions(seed=warmup)
    assert term.contribution(predicted, predicted[UNCONDITIONAL], warmup, state) is not None


def test_sld_ignores_elements_where_the_prompt_is_already_far_from_the_concept():
    term = sld(sld_warmup_steps=0, sld_momentum_scale=0, sld_threshold=0.025)
    predicted = predictions()
    safety = term.contribution(predicted, predicted[UNCONDITIONAL], 0, TermState())
    far = (predicted[PROMPT] - predicted[CONCEPT]) >= 0.025
    assert not safety[far].any()
    # elsewhere: minus the concept's direction, scaled up to 1 (the classifier-free scale comes later)
    scale = torch.clamp((predicted[PROMPT] - predicted[CONCEPT]).abs() * 2000, max=1.0)
    expected = -(predicted[CONCEPT] - predicted[UNCONDITIONAL]) * scale
    assert torch.allclose(safety[~far], expected[~far])


@pytest.mark.parametrize("make_term", [sega, sld])
def test_a_term_treats_each_image_of_a_batch_alone(make_term):
    batch = predictions(batch=3)
    term = make_term(**({"edit_warmup_steps": 0} if make_term is sega else {"sld_warmup_steps": 0}))
    together = term.contribution(batch, batch[UNCONDITIONAL], 0, TermState())
    for index in range(3):
        alone = {branch: value[index : index + 1] for branch, value in batch.items()}
        result = term.contribution(alone, alone[UNCONDITIONAL], 0, TermState())
        assert torch.allclose(result, together[index : index + 1])


def test_sega_on_sdxl_keeps_the_pixels_whose_magnitude_summed_over_channels_is_largest():
    # the SEGA authors' SemanticStableDiffusionXLPipeline, written out: sum |edit| over the
    # channels, repeat it per channel, quantile per channel, one spatial mask for all
    term = sega(edit_threshold=0.75, edit_warmup_steps=0, edit_momentum_scale=0, mask="summed_channels")
    predicted = predictions()
    edit = -(predicted[CONCEPT] - predicted[UNCONDITIONAL]) * 7
    summed = torch.sum(torch.abs(edit), dim=1, keepdim=True).repeat(1, 4, 1, 1)
    threshold = torch.quantile(summed.flatten(start_dim=2), 0.75, dim=2, keepdim=False)
    expected = torch.where(summed >= threshold[:, :, None, None], edit, torch.zeros_like(edit))
    found = term.contribution(predicted, predicted[UNCONDITIONAL], 0, TermState())
    assert torch.equal(found, expected)
    kept = found != 0
    assert torch.equal(kept, kept[:, :1].expand_as(kept))  # the same pixels in every channel
    assert kept[:, 0].flatten(start_dim=1).sum(dim=1).tolist() == [16, 16]
    per_channel = sega(edit_threshold=0.75, edit_warmup_steps=0, edit_momentum_scale=0)
    assert not torch.equal(per_channel.contribution(predicted, predicted[UNCONDITIONAL], 0, TermState()), found)


def test_each_architecture_gets_the_sega_mask_of_its_authors_pipeline():
    strong = mitigation("sega", preset="strong")
    assert guidance_for(strong, 7.5, SD).terms[0].mask == "per_channel"
    assert guidance_for(strong, 7.5, SDXL).terms[0].mask == "summed_channels"
    with pytest.raises(ValueError, match="not one of"):
        sega(mask="per_pixel")


def test_sld_is_subtracted_from_the_prompts_difference_before_the_classifier_free_scale():
    # StableDiffusionPipelineSafe: uncond + scale * ((text - uncond) - safety), in that order
    predicted = {branch: value.to(torch.bfloat16) for branch, value in predictions().items()}
    term = sld(sld_warmup_steps=0, sld_momentum_scale=0)
    guidance = Guidance(ClassifierFree(7.5), (term,))
    guided = guidance.combine(predicted, 0, guidance.start())
    uncond, text = predicted[UNCONDITIONAL], predicted[PROMPT]
    safety = -term.contribution(predicted, uncond, 0, TermState())
    assert torch.equal(guided, uncond + 7.5 * ((text - uncond) - safety))
    assert not torch.equal(guided, uncond + (7.5 * (text - uncond) - 7.5 * safety))  # bf16 rounds otherwise


def test_each_image_can_be_guided_by_its_own_scale_and_none_at_one_or_less():
    predicted = predictions(batch=3)
    guidance = Guidance(ClassifierFree(2.0), (sld(sld_warmup_steps=0),))
    guided = guidance.combine(predicted, 0, guidance.start(), scales=torch.tensor([7.5, 12.0, 1.0]))
    for index, scale in enumerate((7.5, 12.0)):
        alone = {branch: value[index : index + 1] for branch, value in predicted.items()}
        each = Guidance(ClassifierFree(scale), (sld(sld_warmup_steps=0),))
        assert torch.allclose(guided[index : index + 1], each.combine(alone, 0, each.start()))
    assert torch.equal(guided[2], predicted[PROMPT][2])  # as diffusers' pipelines at guidance_scale 1
