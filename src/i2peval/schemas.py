"""Arrow schemas of every table that passes between stages.

The tables whose columns the judges decide (SCORES, IMAGE_FLAGS) are built from the judges'
records in `judges.registry`. Each stage writes exactly these columns, in this order, and
readers check them with
`read_table`, so a stale or foreign file fails with a message naming the
missing column instead of a KeyError deep in a computation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from i2peval.errors import I2PEvalError
from i2peval.storage import atomic_write

PROMPTS = pa.schema(
    [
        ("prompt_id", pa.int32()),
        ("shard", pa.int32()),
        ("text", pa.string()),
        ("categories", pa.list_(pa.string())),
        ("hard", pa.bool_()),
        ("seed", pa.int64()),
        ("guidance", pa.float32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
    ]
)

IMAGES = pa.schema(
    [
        ("prompt_id", pa.int32()),
        ("image_index", pa.int32()),
        ("png", pa.binary()),
    ]
)

MANIFEST = pa.schema(
    [
        ("prompt_set", pa.string()),  # the name of the prompt set the image's prompt belongs to
        ("model", pa.string()),
        ("architecture", pa.string()),
        ("model_commit", pa.string()),
        ("mitigation", pa.string()),
        ("mitigation_settings", pa.string()),
        ("prompt_id", pa.int32()),
        ("image_index", pa.int32()),
        ("seed", pa.int64()),
        ("text", pa.string()),
        ("steps", pa.int32()),
        ("guidance_scale", pa.float32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("dtype", pa.string()),
        ("prompt_cleaning", pa.string()),
        ("device", pa.string()),
        ("gpu_assignment", pa.string()),  # CUDA_VISIBLE_DEVICES=<value>, claimed=<i> or none
        ("code_version", pa.string()),
        ("seconds", pa.float32()),
        ("degenerate", pa.string()),  # why the image means nothing (generation/degenerate.py), or null
    ]
)

# Per profile x judge x model x mitigation x category. `judge` is "any" for the profile's
# verdict, or one judge of a profile that reads several, for that judge's part alone.
# `category` is "all", an I2P label, or "hard" (the hard prompts of every label).
# ip_low/ip_high: 95 % percentile bootstrap interval over prompts; emi_mean/emi_std exact,
# emi_mc_mean/emi_mc_std the harness's Monte Carlo (seeded draws).
METRICS = pa.schema(
    [
        ("prompt_set", pa.string()),
        ("profile", pa.string()),
        ("judge", pa.string()),
        ("model", pa.string()),
        ("mitigation", pa.string()),
        ("category", pa.string()),
        ("n_prompts", pa.int64()),
        ("n_images", pa.int64()),
        ("n_unscored", pa.int64()),
        ("n_flagged", pa.int64()),
        ("inappropriate_probability", pa.float64()),
        ("ip_low", pa.float64()),
        ("ip_high", pa.float64()),
        ("emi_mean", pa.float64()),
        ("emi_std", pa.float64()),
        ("emi_mc_mean", pa.float64()),
        ("emi_mc_std", pa.float64()),
    ]
)

# Each mitigation against its model's baseline (the condition of mitigation kind none),
# paired on image (same prompt, same seed, both scored), per profile x judge x category.
# ip_difference = IP(mitigation) - IP(baseline) on the pairs, with a paired bootstrap
# interval over prompts; relative_reduction = 1 - IP(mitigation) / IP(baseline) (null when
# the baseline's IP is 0); p_value: McNemar's exact test on the discordant pairs
# (only_baseline: flagged under the baseline alone; only_mitigation: under the mitigation
# alone); p_holm: Holm-adjusted within each profile x judge x category. alignment_*:
# CLIPScore on the pairs, mitigation minus baseline with its paired bootstrap interval
# (null without CLIPScore).
COMPARISONS = pa.schema(
    [
        ("prompt_set", pa.string()),
        ("profile", pa.string()),
        ("judge", pa.string()),
        ("model", pa.string()),
        ("mitigation", pa.string()),
        ("baseline", pa.string()),
        ("category", pa.string()),
        ("n_prompts", pa.int64()),
        ("n_pairs", pa.int64()),
        ("only_baseline", pa.int64()),
        ("only_mitigation", pa.int64()),
        ("ip_baseline", pa.float64()),
        ("ip_mitigation", pa.float64()),
        ("ip_difference", pa.float64()),
        ("difference_low", pa.float64()),
        ("difference_high", pa.float64()),
        ("relative_reduction", pa.float64()),
        ("p_value", pa.float64()),
        ("p_holm", pa.float64()),
        ("alignment_baseline", pa.float64()),
        ("alignment_mitigation", pa.float64()),
        ("alignment_difference", pa.float64()),
        ("alignment_low", pa.float64()),
        ("alignment_high", pa.float64()),
    ]
)


# Prompt alignment (CLIPScore, 100 * max(cos, 0)) of the images per model x mitigation x category.
ALIGNMENT = pa.schema(
    [
        ("prompt_set", pa.string()),
        ("model", pa.string()),
        ("mitigation", pa.string()),
        ("category", pa.string()),
        ("n_images", pa.int64()),
        ("n_unscored", pa.int64()),
        ("clip_score_mean", pa.float64()),
        ("clip_score_std", pa.float64()),
    ]
)


# The first column of MANIFEST, METRICS, COMPARISONS and ALIGNMENT: the prompt set their rows
# belong to (each set is measured on its own; its name keeps tables of several sets apart).
# FID of each condition's images of a prompt set against its reference images (metrics/fid.py)
FID = pa.schema(
    [
        ("prompt_set", pa.string()),
        ("model", pa.string()),
        ("mitigation", pa.string()),
        ("images", pa.int64()),
        ("reference_images", pa.int64()),
        ("fid", pa.float64()),
    ]
)

SET_COLUMN = "prompt_set"


def measured_columns(schema: pa.Schema) -> list[str]:
    """The columns of a metrics table (METRICS, COMPARISONS, ALIGNMENT) that the computation
    of one prompt set's numbers gives: all but its SET_COLUMN, which `metrics.aggregate`
    adds."""
    return [name for name in schema.names if name != SET_COLUMN]


class SchemaMismatch(I2PEvalError, ValueError):
    """A table lacks the columns a stage needs, or holds values of the wrong type."""


def conform(table: pa.Table, expected: pa.Schema, source: str | Path) -> pa.Table:
    """`table` with exactly the columns of `expected`, in order and cast to its types.

    Raises `SchemaMismatch` naming `source` and every missing or uncastable column.
    """
    missing = [name for name in expected.names if name not in table.column_names]
    if missing:
        raise SchemaMismatch(f"{source}: missing columns {missing}")
    try:
        return table.select(expected.names).cast(expected)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise SchemaMismatch(f"{source}: columns do not fit the expected types: {error}") from error


def read_table(path: str | Path, expected: pa.Schema, repair: str = "") -> pa.Table:
    """Read a Parquet file as a table of schema `expected`; errors name the file (and end
    with `repair`, what to do about it, when given)."""
    with repaired(repair):
        try:
            table = pq.read_table(path)
        except FileNotFoundError:
            raise SchemaMismatch(f"{path}: missing") from None
        except (OSError, pa.ArrowException) as error:
            raise SchemaMismatch(f"{path}: not a readable Parquet file ({error})") from None
        return conform(table, expected, path)


def read_columns(path: str | Path, expected: pa.Schema, columns: list[str], repair: str = "") -> pa.Table:
    """Only `columns` of a Parquet file whose schema must fit `expected`; errors name the file
    (and end with `repair` when given)."""
    with repaired(repair):
        try:
            schema = pq.read_schema(path)
            conform(schema.empty_table(), expected, path)
            return conform(
                pq.read_table(path, columns=columns), pa.schema([expected.field(c) for c in columns]), path
            )
        except FileNotFoundError:
            raise SchemaMismatch(f"{path}: missing") from None
        except (OSError, pa.ArrowException) as error:
            raise SchemaMismatch(f"{path}: not a readable Parquet file ({error})") from None


def read_first_row(path: str | Path, expected: pa.Schema, columns: list[str]) -> dict[str, Any] | None:
    """`columns` of the first row of a Parquet file whose schema must fit `expected`, reading
    no further (None when it has no rows); errors name the file."""
    try:
        with pq.ParquetFile(path) as file:
            conform(file.schema_arrow.empty_table(), expected, path)
            batch = next(file.iter_batches(batch_size=1, columns=columns), None)
    except FileNotFoundError:
        raise SchemaMismatch(f"{path}: missing") from None
    except (OSError, pa.ArrowException) as error:
        raise SchemaMismatch(f"{path}: not a readable Parquet file ({error})") from None
    if batch is None or batch.num_rows == 0:
        return None
    first = conform(pa.Table.from_batches([batch]), pa.schema([expected.field(c) for c in columns]), path)
    return first.to_pylist()[0]


@contextmanager
def repaired(repair: str) -> Iterator[None]:
    """`SchemaMismatch` raised inside ends with `repair` (unchanged when it is empty)."""
    try:
        yield
    except SchemaMismatch as error:
        if not repair:
            raise
        raise SchemaMismatch(f"{error}: {repair}") from None


def write_table(
    table: pa.Table, path: str | Path, expected: pa.Schema, metadata: dict[str, str] | None = None, **parquet_options
) -> None:
    """Write `table` as schema `expected` with the Parquet key-value `metadata`, atomically
    (`storage.atomic_write`)."""
    table = conform(table, expected, path)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    atomic_write(path, lambda partial: pq.write_table(table, partial, **parquet_options))


def read_metadata(path: str | Path, key: str) -> str | None:
    """The Parquet key-value metadata `key` that `write_table` wrote, None when the file
    holds none (or cannot be read: reading its table names the file)."""
    try:
        value = (pq.read_schema(path).metadata or {}).get(key.encode())
    except (OSError, pa.ArrowException):
        return None
    return None if value is None else value.decode()

