"""Prompt text to CLIP token ids, the way the official harness's tokenizers made them.

Two named options (docs/protocol.md#text-handling):

- ``cleaning``: the harness ran transformers 4.x with ftfy installed, so every text was
  cleaned with ``ftfy.fix_text`` before BPE (curly quotes straightened, mojibake and
  some HTML entities repaired); transformers 5's CLIPTokenizer no longer does.
  ``"ftfy"`` (default) restores it, ``"none"`` feeds the text as it is. Whitespace
  runs and case are handled by the tokenizer itself in both versions.
- ``long_prompts``: a text over the tokenizer's 77 positions is truncated to start
  token + 75 tokens + end token (``"truncate"``, what StableDiffusionPipeline and the
  SLD pipeline did) or, as diffusers' SEGA pipeline did, tokenized whole and cut to
  its first 77 ids: start token + 76 tokens and no end token (``"cut"``). Which one
  the harness used depends on the mitigation (`mitigations.HARNESS_LONG_PROMPTS`); only
  Stable Diffusion models follow it (`mitigations.settings_on`).
"""

from __future__ import annotations

from dataclasses import dataclass

CLEANINGS = ("ftfy", "none")
LONG_PROMPTS = ("truncate", "cut")


@dataclass(frozen=True)
class TextOptions:
    """How texts become token ids."""

    cleaning: str = "ftfy"
    long_prompts: str = "truncate"

    def __post_init__(self):
        if self.cleaning not in CLEANINGS:
            raise ValueError(f"text cleaning {self.cleaning!r} is not one of {CLEANINGS}")
        if self.long_prompts not in LONG_PROMPTS:
            raise ValueError(f"long_prompts {self.long_prompts!r} is not one of {LONG_PROMPTS}")


def clean_text(text: str, cleaning: str) -> str:
    """`text` as the tokenizer should see it under `cleaning`."""
    if cleaning == "ftfy":
        import ftfy

        return ftfy.fix_text(text)
    if cleaning == "none":
        return text
    raise ValueError(f"text cleaning {cleaning!r} is not one of {CLEANINGS}")


def token_ids(tokenizer, text: str, options: TextOptions, length: int | None = None) -> tuple[list[int], list[int]]:
    """Input ids and attention mask of `text`, padded to `length` positions (the
    tokenizer's model_max_length unless given)."""
    length = length or tokenizer.model_max_length
    text = clean_text(text, options.cleaning)
    if options.long_prompts == "truncate":
        encoded = tokenizer(text, padding="max_length", max_length=length, truncation=True)
        return encoded.input_ids, encoded.attention_mask
    encoded = tokenizer(text, padding="max_length", max_length=length)
    return encoded.input_ids[:length], encoded.attention_mask[:length]
