"""Which columns of a prompt file hold what the prompt table needs.

A prompt set's file maps onto the prompt table (schemas.PROMPTS) through `PromptColumns`:
the text, the seed, the guidance, the categories, the hard flag, a stable prompt id and
the image size, each a named column or absent. Absent columns get a stated value:

- no seed column: `derived_seed` of the prompt id, the same for every set and run;
- no guidance column: none (the model's own scale guides; an architecture that takes the
  prompt's scale refuses such a prompt, naming it);
- no categories column: the set's one `category`, or none (the set reports "all" only);
- no hard column: not hard (the "hard" subset is I2P's own);
- no prompt id column: the row's position, from 0;
- no size columns: none (the study uses each model's resolution anyway).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields
from typing import Any

from i2peval.plan import PlanError

# The seven labels of the I2P ``categories`` column (docs/protocol.md#categories).
I2P_CATEGORIES: tuple[str, ...] = (
    "hate",
    "harassment",
    "violence",
    "self-harm",
    "sexual",
    "shocking",
    "illegal activity",
)


@dataclass(frozen=True)
class PromptColumns:
    """The file's column of each prompt table field; None where the file has none (the
    module docstring says what such a field gets). `category` is not a column: the one
    label of every prompt of a set without a categories column."""

    text: str = "prompt"
    seed: str | None = "sd_seed"
    guidance: str | None = "sd_guidance_scale"
    categories: str | None = "categories"
    category: str | None = None
    hard: str | None = "hard"
    prompt_id: str | None = None
    width: str | None = "sd_image_width"
    height: str | None = "sd_image_height"

    def __post_init__(self) -> None:
        if self.categories is not None and self.category is not None:
            raise PlanError(
                f"prompt columns: categories is the column {self.categories!r} and category the label "
                f"{self.category!r}: give one of them"
            )
        if self.category is not None and self.category not in I2P_CATEGORIES:
            raise PlanError(
                f"prompt columns: category {self.category!r} is not an I2P category; allowed: "
                f"{', '.join(I2P_CATEGORIES)}"
            )
        if (self.width is None) != (self.height is None):
            raise PlanError("prompt columns: give both width and height, or neither")

    @classmethod
    def from_config(cls, value: str | dict[str, Any]) -> PromptColumns:
        """A named layout (`LAYOUTS`) or a mapping of field to column (null: no such
        column; a field left out keeps the I2P file's column)."""
        if isinstance(value, str):
            return LAYOUTS[value]
        return cls(**value)

    @property
    def file_columns(self) -> tuple[str, ...]:
        """The columns the file must have, in field order."""
        named = (getattr(self, field.name) for field in fields(self) if field.name != "category")
        return tuple(column for column in named if column is not None)

    def describe(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """Where each field comes from, in words, for the report."""
        if self.categories is not None:
            categories = f"categories from {self.categories!r}"
        elif self.category is not None:
            categories = f"every prompt in the category {self.category}"
        else:
            categories = "no categories (metrics over all prompts only)"
        return "; ".join(
            [
                f"text from {self.text!r}",
                f"seeds from {self.seed!r}" if self.seed else "seeds derived from the prompt ids (derived_seed)",
                f"guidance from {self.guidance!r}" if self.guidance else "no per-prompt guidance",
                categories,
                f"prompt ids from {self.prompt_id!r}" if self.prompt_id else "prompt ids are row positions",
            ]
        )


# The hub's i2p_benchmark.csv, and the erasure literature's copy of it
# (docs/protocol.md#the-erasure-literatures-copy): the same columns but the seed's and
# guidance's renamed, with case_number, an unnamed index column and row 2260 empty.
LAYOUTS = {
    "i2p": PromptColumns(),
    "esd": PromptColumns(seed="evaluation_seed", guidance="evaluation_guidance", prompt_id="case_number"),
}


def derived_seed(prompt_id: int) -> int:
    """The seed of a prompt whose set gives none: the first 4 bytes of the sha256 of
    ``i2peval seed <prompt_id>``, big-endian, in I2P's own seed range (0 to 2**32 - 1)."""
    return int.from_bytes(hashlib.sha256(f"i2peval seed {prompt_id}".encode()).digest()[:4], "big")
