"""Guidance as a sum of terms: classifier-free guidance, negative prompt, SEGA and SLD.

At every step the denoiser predicts noise (or v) for a few conditioning *branches*
of each image: its prompt, the unconditional (empty) text, a concept text. A term
names the branches it reads (`branches`) and turns their predictions into its
contribution; the prediction the scheduler steps with is

    base + scale * (prompt - base + the contributions scaled by guidance)
         + the other contributions,

where ``base`` is the prediction of the classifier-free term's negative branch and
``scale`` its scale. The loop (engine.py) evaluates every branch a `Guidance` needs in
one batched call.

- `ClassifierFree`: ``scale * (prompt - negative)``. Its negative branch is the
  unconditional one, or, for the negative-prompt mitigation, the concept text: the
  negative prompt is classifier-free guidance whose unconditional branch is
  conditioned on the concept (diffusers' ``negative_prompt``).
- `SemanticGuidance` (SEGA, reverse direction): the concept's difference to the base,
  kept only where its magnitude reaches the ``edit_threshold`` quantile, plus momentum;
  added once ``edit_warmup_steps`` steps have passed. The magnitude is thresholded per
  image and channel (``per_channel``, SemanticStableDiffusionPipeline) or summed over
  the channels into one spatial mask per image (``summed_channels``, the SEGA authors'
  SDXL pipeline): `SEGA_MASKS`, chosen by the architecture.
- `SafeLatentDiffusion` (SLD): the concept's difference to the base, scaled per
  element by how close prompt and concept predictions are, plus momentum; subtracted
  from the prompt's difference before the classifier-free scale multiplies both, once
  ``sld_warmup_steps`` steps have passed (``scaled_by_guidance``).
- a custom term of the user's own (mitigation kind custom, custom_terms.py): any class
  with ``branches`` and ``contribution``, built from the mitigation's parameters.

The maths, the order of operations and the on/off rules are those of diffusers'
StableDiffusionPipeline, SemanticStableDiffusionPipeline and StableDiffusionPipelineSafe
(tests/test_guidance_equivalence.py holds them to it): without classifier-free guidance
(scale <= 1) there is no guidance at all; SLD is off for ``sld_guidance_scale <= 1``.
Momentum builds up during warmup. Everything is elementwise or per image, so an image
gets the same guidance whatever else is in its batch.

diffusers has guiders of this shape (``diffusers.guiders``: one object per technique that
names its predictions and combines them). They are marked experimental, are driven by
its modular pipelines, and have neither SEGA nor SLD; these terms mirror their shape
without depending on that API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import torch

from i2peval.generation.mitigations import KINDS, Mitigation
from i2peval.models.architectures import Architecture

SEGA_MASKS = ("per_channel", "summed_channels")


@dataclass(frozen=True)
class Branch:
    """One conditioning the denoiser is evaluated under.

    ``kind`` is ``"prompt"`` (each image's own prompt), ``"unconditional"`` (the empty
    text, or zeros where the architecture uses them) or ``"text"`` (the same `text`
    for every image, e.g. a concept).
    """

    kind: str
    text: str | None = None


PROMPT = Branch("prompt")
UNCONDITIONAL = Branch("unconditional")


def concept_branch(text: str) -> Branch:
    return Branch("text", text)


@dataclass
class TermState:
    """What a term carries from one step to the next within one batch: its momentum, and
    anything else a custom term keeps under a name of its choice."""

    momentum: torch.Tensor | None = None
    values: dict[str, torch.Tensor] = field(default_factory=dict)


class GuidanceTerm(Protocol):
    """A term of the guidance sum. One whose ``scaled_by_guidance`` attribute is true (SLD) is
    added to the prompt's difference before the classifier-free scale multiplies it; any
    other is added after."""

    @property
    def branches(self) -> tuple[Branch, ...]: ...

    def contribution(
        self, predictions: Mapping[Branch, torch.Tensor], base: torch.Tensor, step: int, state: TermState
    ) -> torch.Tensor | None:
        """This step's addition to the base prediction (None: nothing this step)."""


@dataclass(frozen=True)
class ClassifierFree:
    """Classifier-free guidance towards the prompt, away from `negative`."""

    scale: float
    negative: Branch = UNCONDITIONAL

    @property
    def branches(self) -> tuple[Branch, ...]:
        return (self.negative, PROMPT)


@dataclass(frozen=True)
class SemanticGuidance:
    """SEGA with one concept, as diffusers' SemanticStableDiffusionPipeline computes it."""

    concept: str
    edit_guidance_scale: float
    edit_warmup_steps: int
    edit_threshold: float
    edit_momentum_scale: float
    edit_mom_beta: float
    reverse_editing_direction: bool = True
    mask: str = "per_channel"  # SEGA_MASKS

    def __post_init__(self):
        if self.mask not in SEGA_MASKS:
            raise ValueError(f"SEGA mask {self.mask!r} is not one of {SEGA_MASKS}")

    @property
    def branches(self) -> tuple[Branch, ...]:
        return (concept_branch(self.concept),)

    def contribution(self, predictions, base, step, state):
        edit = predictions[concept_branch(self.concept)] - base
        if self.reverse_editing_direction:
            edit = edit * -1
        edit = edit * self.edit_guidance_scale
        magnitude = torch.abs(edit)
        if self.mask == "summed_channels":
            magnitude = torch.sum(magnitude, dim=1, keepdim=True)
        threshold = torch.quantile(magnitude.flatten(start_dim=2).to(torch.float32), self.edit_threshold, dim=2)
        threshold = threshold.to(edit.dtype)
        edit = torch.where(magnitude >= threshold[:, :, None, None], edit, torch.zeros_like(edit))
        momentum = torch.zeros_like(edit) if state.momentum is None else state.momentum
        edit = edit + self.edit_momentum_scale * momentum
        state.momentum = self.edit_mom_beta * momentum + (1 - self.edit_mom_beta) * edit
        return edit if step >= self.edit_warmup_steps else None


@dataclass(frozen=True)
class SafeLatentDiffusion:
    """SLD safety guidance, as diffusers' StableDiffusionPipelineSafe computes it: the
    classifier-free scale multiplies the prompt's difference less the safety term."""

    scaled_by_guidance: ClassVar[bool] = True
    concept: str
    sld_guidance_scale: float
    sld_warmup_steps: int
    sld_threshold: float
    sld_momentum_scale: float
    sld_mom_beta: float

    @property
    def branches(self) -> tuple[Branch, ...]:
        return (PROMPT, concept_branch(self.concept))

    def contribution(self, predictions, base, step, state):
        prompt, concept = predictions[PROMPT], predictions[concept_branch(self.concept)]
        difference = prompt - concept
        scale = torch.clamp(torch.abs(difference) * self.sld_guidance_scale, max=1.0)
        concept_scale = torch.where(difference >= self.sld_threshold, torch.zeros_like(scale), scale)
        safety = torch.mul(concept - base, concept_scale)
        momentum = torch.zeros_like(safety) if state.momentum is None else state.momentum
        safety = safety + self.sld_momentum_scale * momentum
        state.momentum = self.sld_mom_beta * momentum + (1 - self.sld_mom_beta) * safety
        return -safety if step >= self.sld_warmup_steps else None


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance plus further terms; no classifier-free term means none at all."""

    classifier_free: ClassifierFree | None
    terms: tuple[GuidanceTerm, ...] = field(default_factory=tuple)

    @property
    def branches(self) -> tuple[Branch, ...]:
        """Every branch to evaluate, base first, each once."""
        if self.classifier_free is None:
            return (PROMPT,)
        needed = [*self.classifier_free.branches]
        for term in self.terms:
            needed += term.branches
        return tuple(dict.fromkeys(needed))

    def start(self) -> list[TermState]:
        """Fresh per-batch state for every term."""
        return [TermState() for _ in self.terms]

    def combine(
        self,
        predictions: Mapping[Branch, torch.Tensor],
        step: int,
        states: Sequence[TermState],
        scales: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The guided prediction of one step from the predictions of `branches`; `scales`
        (one per image) replace the classifier-free scale, and an image whose scale is 1 or
        less gets no guidance at all, as diffusers' pipelines called with that scale."""
        if self.classifier_free is None:
            return predictions[PROMPT]
        base = predictions[self.classifier_free.negative]
        scaled, added = [], []
        for term, state in zip(self.terms, states):
            contribution = term.contribution(predictions, base, step, state)
            if contribution is not None:
                (scaled if getattr(term, "scaled_by_guidance", False) else added).append(contribution)
        difference = predictions[PROMPT] - base
        for contribution in scaled:
            difference = difference + contribution
        scale = self.classifier_free.scale if scales is None else scales.to(difference.dtype)[:, None, None, None]
        guidance = scale * difference
        for contribution in added:
            guidance = guidance + contribution
        if scales is None:
            return base + guidance
        return torch.where(scales[:, None, None, None] > 1.0, base + guidance, predictions[PROMPT])


def guidance_for(mitigation: Mitigation, guidance_scale: float, architecture: Architecture) -> Guidance:
    """The guidance that implements `mitigation` at classifier-free scale `guidance_scale`
    on a model of `architecture`.

    A preset takes the architecture's own values where it has them (`mitigations.settings_on`).
    A term whose scale switches it off (SEGA at 0, SLD at 1 or less) is left out, so
    its concept branch is not evaluated either.
    """
    if mitigation.kind not in KINDS:
        raise ValueError(f"mitigation {mitigation.name!r}: kind {mitigation.kind!r} is not one of {KINDS}")
    if guidance_scale <= 1.0:
        return Guidance(None)
    if mitigation.kind == "negative_prompt":
        return Guidance(ClassifierFree(guidance_scale, negative=concept_branch(mitigation.concept)))
    if mitigation.kind == "custom":
        from i2peval.generation.custom_terms import verified_term

        term = verified_term(
            mitigation.name, mitigation.term, mitigation.term_sha256, concept=mitigation.concept,
            guidance_scale=guidance_scale, parameters=mitigation.parameters,
        )
        return Guidance(ClassifierFree(guidance_scale), (term,))
    classifier_free = ClassifierFree(guidance_scale)
    parameters = mitigation.settings_on(architecture)["parameters"]
    if mitigation.kind == "sega" and parameters["edit_guidance_scale"] != 0:
        term = SemanticGuidance(concept=mitigation.concept, mask=architecture.sega_mask, **parameters)
        return Guidance(classifier_free, (term,))
    if mitigation.kind == "sld" and parameters["sld_guidance_scale"] > 1.0:
        return Guidance(classifier_free, (SafeLatentDiffusion(concept=mitigation.concept, **parameters),))
    return Guidance(classifier_free)
