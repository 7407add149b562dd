"""Stage 1: the I2P prompt table, normalised and split into shards.

Policy for the quirks of the real ``i2p_benchmark.csv`` (docs/protocol.md#the-i2p-prompts):

- Columns are found by name, in one of two layouts (`CSV_LAYOUTS`): the hub file's, and
  the erasure literature's copy (``evaluation_seed``, ``evaluation_guidance``,
  ``case_number``; docs/protocol.md#the-erasure-literatures-copy). Any column before
  ``prompt`` (a leading index column, named or not) is ignored; ``prompt_id`` is the
  0-based row number in the source (the copy's ``case_number``, equal to it there),
  never a value from such a column, so it is stable across copies of the file.
- Every row is kept, including duplicate texts (they carry different seeds): the
  study's 4,703 prompts stay 4,703. Metrics can still merge duplicates (EMI option).
- The empty prompt is kept as the file spells it: the hub CSV's row 2260 says ``Null``,
  and the official harness passed that word to the model (pandas' CSV reader, under the
  harness's datasets loader, does not take 'Null' for a missing value),
  so the model sees "Null" here too; a copy that spells it ``''`` gives the empty text.
- Non-breaking and other Unicode spaces become plain spaces and the text is stripped
  at both ends, as the CLIP tokenizer's whitespace cleaning would; emoji and long text
  are kept (generation/text.py says how text over 77 tokens is cut, and applies the
  harness's ftfy cleaning).
- ``categories`` is split on commas; a label outside the seven I2P labels is an error
  naming the row (rows count from 0 after the header, like prompt_id), as is a seed
  that is not an integer from 0 to 2**63 - 1 (read exactly, never through a float) or a
  size that is not a positive integer.
- the image size columns are kept for reference only: the study uses the model's own
  resolution (docs/protocol.md#stable-diffusion-family). ``sd_guidance_scale`` becomes
  the ``guidance`` column, which guides images only where the harness let it
  (AltDiffusion under SEGA: `Architecture.prompt_guidance`); elsewhere the model's own
  scale applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import polars as pl
import pyarrow as pa

from i2peval.errors import I2PEvalError
from i2peval.plan import PlanError
from i2peval.schemas import PROMPTS, write_table

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
class CsvLayout:
    """Where a prompt CSV keeps what the prompt table needs: its seed and guidance columns,
    and the column of a stable prompt id (None: the row's position, from 0)."""

    seed: str
    guidance: str
    prompt_id: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        ids = () if self.prompt_id is None else (self.prompt_id,)
        return ("prompt", "categories", "hard", self.seed, self.guidance, "sd_image_width", "sd_image_height", *ids)


# The hub's i2p_benchmark.csv, and the erasure literature's copy of it
# (docs/protocol.md#the-erasure-literatures-copy): the same columns but the seed's and
# guidance's renamed, with case_number, an unnamed index column and row 2260 empty.
CSV_LAYOUTS = {
    "i2p": CsvLayout(seed="sd_seed", guidance="sd_guidance_scale"),
    "esd": CsvLayout(seed="evaluation_seed", guidance="evaluation_guidance", prompt_id="case_number"),
}
_SPACES = re.compile(r"[\s\u00a0\u2000-\u200b\u202f\u205f\u3000]+")


class PromptFileError(I2PEvalError, ValueError):
    """The prompt CSV does not follow the I2P schema; the message names row and column."""


def normalise_text(raw: str) -> str:
    """Prompt text with Unicode spaces unified and ends stripped; 'Null' stays 'Null'."""
    return _SPACES.sub(" ", raw).strip()


def parse_categories(raw: str, row: int) -> list[str]:
    """Split ``"violence, self-harm"`` into labels and check each is an I2P category."""
    labels = [label.strip() for label in raw.split(",") if label.strip()]
    unknown = [label for label in labels if label not in I2P_CATEGORIES]
    if unknown:
        raise PromptFileError(
            f"row {row}: unknown categories {unknown}; allowed: {', '.join(I2P_CATEGORIES)}"
        )
    return labels


SEED_LIMIT = 2**63  # seeds are stored as int64


def _parse_int(raw: str, row: int, column: str, minimum: int, limit: int | None = None) -> int:
    """An integer written as ``12``, ``12.0`` or ``1.2e1``, exactly (no float rounding)."""
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value != value.to_integral_value():
        raise PromptFileError(f"row {row}: column {column!r} is {raw!r}, not an integer")
    integer = int(value)
    if integer < minimum or (limit is not None and integer >= limit):
        allowed = f"from {minimum}" + (f" to {limit - 1}" if limit is not None else " up")
        raise PromptFileError(f"row {row}: column {column!r} is {raw!r}; it must be an integer {allowed}")
    return integer


def _parse_float(raw: str, row: int, column: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise PromptFileError(f"row {row}: column {column!r} is {raw!r}, not a number") from None


def _parse_bool(raw: str, row: int) -> bool:
    value = raw.strip().lower()
    if value in {"1", "1.0", "true"}:
        return True
    if value in {"0", "0.0", "false"}:
        return False
    raise PromptFileError(f"row {row}: column 'hard' is {raw!r}, not 0/1/True/False")


def read_prompt_csv(path: str | Path, layout: str = "i2p") -> pl.DataFrame:
    """Read a prompt CSV of `layout` (`CSV_LAYOUTS`) into the normalised prompt table
    (without shard numbers). Texts are kept as the file spells them: the erasure
    literature's copy's empty row 2260 stays empty, where the hub's file says 'Null'."""
    path, columns = Path(path), CSV_LAYOUTS[layout]
    try:
        raw = pl.read_csv(path, infer_schema=False, empty_string_is_null=False)
    except (pl.exceptions.PolarsError, OSError) as error:
        raise PromptFileError(f"{path}: cannot read as CSV: {error}") from error
    missing = [column for column in columns.columns if column not in raw.columns]
    if missing:
        raise PromptFileError(f"{path}: missing columns {missing} of the {layout} layout; found {raw.columns}")
    rows, seen = [], {}
    for row, record in enumerate(raw.select(columns.columns).iter_rows(named=True)):
        try:
            parsed = parse_row(record, row, columns)
        except PromptFileError as error:
            raise PromptFileError(f"{path}: {error}") from None
        if parsed["prompt_id"] in seen:
            raise PromptFileError(
                f"{path}: rows {seen[parsed['prompt_id']]} and {row} have the same {columns.prompt_id} "
                f"{parsed['prompt_id']}: prompt ids must be unique"
            )
        seen[parsed["prompt_id"]] = row
        rows.append(parsed)
    if not rows:
        raise PromptFileError(f"{path}: no prompts")
    schema = {field.name: pl.from_arrow(pa.array([], field.type)).dtype for field in PROMPTS}
    schema.pop("shard")
    return pl.DataFrame(rows, schema=schema)


def parse_row(record: dict[str, str], row: int, layout: CsvLayout = CSV_LAYOUTS["i2p"]) -> dict:
    """One CSV row (the layout's columns as strings) as a prompt table row."""
    return {
        "prompt_id": row if layout.prompt_id is None else _parse_int(
            record[layout.prompt_id], row, layout.prompt_id, 0, 2**31
        ),
        "text": normalise_text(record["prompt"]),
        "categories": parse_categories(record["categories"], row),
        "hard": _parse_bool(record["hard"], row),
        "seed": _parse_int(record[layout.seed], row, layout.seed, 0, SEED_LIMIT),
        "guidance": _parse_float(record[layout.guidance], row, layout.guidance),
        "width": _parse_int(record["sd_image_width"], row, "sd_image_width", 1, 2**31),
        "height": _parse_int(record["sd_image_height"], row, "sd_image_height", 1, 2**31),
    }


def check_shard_count(shards: int, prompt_count: int) -> None:
    """`PlanError` naming prompts.shards unless every shard gets at least one prompt."""
    if not 1 <= shards <= prompt_count:
        raise PlanError(
            f"prompts.shards is {shards}, but there are {prompt_count} prompts: choose 1 to "
            f"{prompt_count} shards so that no shard is empty"
        )


def assign_shards(prompts: pl.DataFrame, shards: int) -> pl.DataFrame:
    """Split prompts into `shards` contiguous, near-equal blocks of prompt_id; add `shard`."""
    check_shard_count(shards, prompts.height)
    count = prompts.height
    return prompts.with_columns(
        shard=((pl.col("prompt_id").rank("ordinal") - 1) * shards // count).cast(pl.Int32)
    ).select(PROMPTS.names)


def write_prompt_tables(prompts: pl.DataFrame, table_path: Path, shard_paths: list[Path]) -> None:
    """Write the whole table and one file per shard (shard k to ``shard_paths[k]``)."""
    sharded = assign_shards(prompts, len(shard_paths))
    write_table(sharded.to_arrow(), table_path, PROMPTS)
    for shard, path in enumerate(shard_paths):
        write_table(sharded.filter(pl.col("shard") == shard).to_arrow(), path, PROMPTS)
