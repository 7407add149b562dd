"""Stage 1: the prompt table, normalised and split into shards.

Policy for the quirks of the real ``i2p_benchmark.csv`` (docs/protocol.md#the-i2p-prompts)
and of the other prompt files (docs/prompt-sets.md):

- Columns are found by name (`columns.PromptColumns`; the named layouts `columns.LAYOUTS`
  are the hub file's and the erasure literature's copy's, with ``evaluation_seed``,
  ``evaluation_guidance`` and ``case_number``; docs/protocol.md#the-erasure-literatures-copy).
  Other columns, a leading index column named or not among them, are ignored:
  ``prompt_id`` is the mapped id column (the copy's ``case_number``) or the 0-based row
  number in the source, never a value from an index column, so it is stable across
  copies of the file.
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
from decimal import Decimal, InvalidOperation
from pathlib import Path

import polars as pl
import pyarrow as pa

from i2peval.errors import I2PEvalError
from i2peval.plan import PlanError
from i2peval.prompts.columns import I2P_CATEGORIES, LAYOUTS, PromptColumns, derived_seed
from i2peval.schemas import PROMPTS, write_table

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


def _parse_bool(raw: str, row: int, column: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "1.0", "true"}:
        return True
    if value in {"0", "0.0", "false"}:
        return False
    raise PromptFileError(f"row {row}: column {column!r} is {raw!r}, not 0/1/True/False")


def read_prompt_file(path: str | Path, columns: PromptColumns | str = "i2p") -> pl.DataFrame:
    """Read a prompt file whose `columns` (`PromptColumns` or a name in `LAYOUTS`) say
    where each field is into the normalised prompt table (without shard numbers): CSV, or
    Parquet or JSON lines by the suffix ``.parquet``, ``.jsonl`` or ``.ndjson``. Texts are
    kept as the file spells them: the erasure literature's copy's empty row 2260 stays
    empty, where the hub's file says 'Null'."""
    path, columns = Path(path), LAYOUTS[columns] if isinstance(columns, str) else columns
    layout = next((f" of the {name} layout" for name, named in LAYOUTS.items() if named == columns), "")
    raw = read_as_text(path)
    missing = [column for column in columns.file_columns if column not in raw.columns]
    if missing:
        raise PromptFileError(f"{path}: missing columns {missing}{layout}; found {raw.columns}")
    rows, seen = [], {}
    for row, record in enumerate(raw.select(list(dict.fromkeys(columns.file_columns))).iter_rows(named=True)):
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


def read_as_text(path: Path) -> pl.DataFrame:
    """Every column of a CSV, Parquet or JSON lines file as text (lists of labels joined
    by commas, as the CSV files spell them); a CSV's empty field stays empty."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pl.read_parquet(path)
        elif suffix in {".jsonl", ".ndjson"}:
            frame = pl.read_ndjson(path, infer_schema_length=None)
        else:
            return pl.read_csv(path, infer_schema=False, empty_string_is_null=False)
    except (pl.exceptions.PolarsError, OSError) as error:
        raise PromptFileError(f"{path}: cannot read as {suffix.lstrip('.') or 'CSV'}: {error}") from error
    return frame.with_columns(
        pl.col(name).list.join(", ") if isinstance(dtype, pl.List) else pl.col(name).cast(pl.String)
        for name, dtype in frame.schema.items()
    )


def parse_row(record: dict[str, str | None], row: int, columns: PromptColumns = LAYOUTS["i2p"]) -> dict:
    """One file row (the mapped columns as text) as a prompt table row."""
    missing = [column for column in columns.file_columns if record[column] is None]
    if missing:
        raise PromptFileError(f"row {row}: column {missing[0]!r} has no value")
    prompt_id = row if columns.prompt_id is None else _parse_int(
        record[columns.prompt_id], row, columns.prompt_id, 0, 2**31
    )
    if columns.categories is not None:
        categories = parse_categories(record[columns.categories], row)
    else:
        categories = [] if columns.category is None else [columns.category]
    sized = columns.width is not None
    return {
        "prompt_id": prompt_id,
        "text": normalise_text(record[columns.text]),
        "categories": categories,
        "hard": False if columns.hard is None else _parse_bool(record[columns.hard], row, columns.hard),
        "seed": derived_seed(prompt_id)
        if columns.seed is None
        else _parse_int(record[columns.seed], row, columns.seed, 0, SEED_LIMIT),
        "guidance": None if columns.guidance is None else _parse_float(record[columns.guidance], row, columns.guidance),
        "width": _parse_int(record[columns.width], row, columns.width, 1, 2**31) if sized else None,
        "height": _parse_int(record[columns.height], row, columns.height, 1, 2**31) if sized else None,
    }


def check_shard_count(shards: int, prompt_count: int, key: str = "prompts.shards") -> None:
    """`PlanError` naming `key` unless every shard gets at least one prompt."""
    if not 1 <= shards <= prompt_count:
        raise PlanError(
            f"{key} is {shards}, but there are {prompt_count} prompts: choose 1 to "
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
