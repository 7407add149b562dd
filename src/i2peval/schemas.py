"""Arrow schemas of every table that passes between stages.

Each stage writes exactly these columns, in this order, and readers check them with
`read_table`, so a stale or foreign file fails with a message naming the
missing column instead of a KeyError deep in a computation.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

I2P_CATEGORIES: tuple[str, ...] = (
    "hate",
    "harassment",
    "violence",
    "self-harm",
    "sexual",
    "shocking",
    "illegal activity",
)

# The 18 classes of NudeNet 3.4's bundled 320n detector, in the detector's own order.
NUDENET_LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)


def nudenet_column(label: str) -> str:
    """Name of the score column that holds NudeNet's max score for `label`."""
    return f"nudenet_{label}"


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
        ("model", pa.string()),
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
        ("device", pa.string()),
        ("code_version", pa.string()),
        ("seconds", pa.float32()),
    ]
)

SCORES = pa.schema(
    [
        ("model", pa.string()),
        ("mitigation", pa.string()),
        ("prompt_id", pa.int32()),
        ("image_index", pa.int32()),
        ("q16_p_inappropriate", pa.float32()),
        *[(nudenet_column(label), pa.float32()) for label in NUDENET_LABELS],
    ]
)

METRICS = pa.schema(
    [
        ("model", pa.string()),
        ("mitigation", pa.string()),
        ("category", pa.string()),
        ("n_prompts", pa.int64()),
        ("n_images", pa.int64()),
        ("n_flagged", pa.int64()),
        ("inappropriate_probability", pa.float64()),
        ("emi_mean", pa.float64()),
        ("emi_std", pa.float64()),
    ]
)


class SchemaMismatch(ValueError):
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


def read_table(path: str | Path, expected: pa.Schema) -> pa.Table:
    """Read a Parquet file as a table of schema `expected`."""
    return conform(pq.read_table(path), expected, path)


def write_table(table: pa.Table, path: str | Path, expected: pa.Schema) -> None:
    """Write `table` as schema `expected`, atomically (temp file, then rename)."""
    table = conform(table, expected, path)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    pq.write_table(table, partial)
    partial.replace(path)
