"""Degenerate images in the metrics: never scored as safe without a named policy saying so."""

import polars as pl
import pyarrow as pa
import pytest

from i2peval.metrics.degenerate import apply_policy, degenerate_counts, read_degenerate, with_degenerate
from i2peval.metrics.rates import BootstrapSettings, EmiSettings, compute_metrics
from i2peval.schemas import MANIFEST, write_table

# (mitigation, prompt_id, image_index, flagged by the judges, degenerate reason)
IMAGES = [
    ("none", 0, 0, True, None),
    ("none", 0, 1, False, None),
    ("none", 1, 0, False, None),
    ("none", 1, 1, False, "all-black image"),
    ("sld", 0, 0, False, "non-finite latents"),
    ("sld", 0, 1, False, "all-black image"),
    ("sld", 1, 0, False, None),
    ("sld", 1, 1, True, None),
]


def manifest_file(path, rows):
    table = pa.Table.from_pylist(
        [
            {
                "model": "m",
                "architecture": "sdxl",
                "model_commit": "local:tiny",
                "mitigation": mitigation,
                "mitigation_settings": "{}",
                "prompt_id": prompt_id,
                "image_index": image_index,
                "seed": 1,
                "text": "a",
                "steps": 2,
                "guidance_scale": 5.0,
                "width": 64,
                "height": 64,
                "dtype": "float16",
                "prompt_cleaning": "ftfy",
                "device": "cpu",
                "code_version": "x",
                "seconds": 0.1,
                "degenerate": reason,
            }
            for mitigation, prompt_id, image_index, _, reason in rows
        ],
        schema=MANIFEST,
    )
    write_table(table, path, MANIFEST)
    return path


@pytest.fixture
def degenerate(tmp_path):
    paths = [manifest_file(tmp_path / "a.parquet", IMAGES[:4]), manifest_file(tmp_path / "b.parquet", IMAGES[4:])]
    return read_degenerate(paths)


@pytest.fixture
def flags(degenerate):
    judged = pl.LazyFrame(
        [
            {"profile": "paper", "model": "m", "mitigation": mitigation, "prompt_id": prompt_id, "image_index": index,
             "flagged": flagged, "q16": flagged, "nudenet2": False, "nudenet3": None, "safety_checker": None}
            for mitigation, prompt_id, index, flagged, _ in IMAGES
        ],
        schema_overrides={
            "prompt_id": pl.Int32, "image_index": pl.Int32, "nudenet3": pl.Boolean, "safety_checker": pl.Boolean
        },
    )
    return with_degenerate(judged, degenerate.lazy())


PROFILE_JUDGES = {"paper": ["q16", "nudenet2"]}
PROMPTS = pl.LazyFrame(
    {"prompt_id": [0, 1], "text": ["a", "b"], "categories": [["violence"]] * 2, "hard": [False, False]},
    schema_overrides={"prompt_id": pl.Int32},
)


def overall(flags, policy, judge="any"):
    judged = apply_policy(flags, policy, PROFILE_JUDGES)
    metrics = compute_metrics(
        judged, PROMPTS, PROFILE_JUDGES, EmiSettings(sample_size=1, draws=10), BootstrapSettings(draws=100)
    )
    return {
        row["mitigation"]: (row["n_images"], row["n_flagged"])
        for row in metrics.filter(pl.col("category") == "all", pl.col("judge") == judge).iter_rows(named=True)
    }


def test_exclude_leaves_degenerate_images_out_of_the_metrics(flags):
    assert overall(flags, "exclude") == {"none": (3, 1), "sld": (2, 1)}


def test_inappropriate_counts_degenerate_images_as_flagged(flags):
    assert overall(flags, "inappropriate") == {"none": (4, 2), "sld": (4, 3)}
    # by each judge the profile reads, too
    assert overall(flags, "inappropriate", judge="nudenet2") == {"none": (4, 1), "sld": (4, 2)}


def test_judged_keeps_the_judges_verdict(flags):
    assert overall(flags, "judged") == {"none": (4, 1), "sld": (4, 1)}


def test_unknown_policy_is_an_error(flags):
    with pytest.raises(ValueError, match="'ignore'"):
        apply_policy(flags, "ignore", PROFILE_JUDGES)


def test_counts_per_condition_with_reasons(degenerate):
    counts = degenerate_counts(degenerate).to_dicts()
    assert counts == [
        {"model": "m", "mitigation": "none", "architecture": "sdxl", "images": 4, "degenerate": 1,
         "reasons": [{"degenerate": "all-black image", "count": 1}]},
        {"model": "m", "mitigation": "sld", "architecture": "sdxl", "images": 4, "degenerate": 2,
         "reasons": [{"degenerate": "all-black image", "count": 1}, {"degenerate": "non-finite latents", "count": 1}]},
    ]


def test_flags_keep_their_order_when_the_reasons_are_joined(degenerate):
    keys = [(mitigation, prompt_id, index) for mitigation, prompt_id, index, _, _ in reversed(IMAGES)]
    judged = pl.LazyFrame(
        [{"model": "m", "mitigation": m, "prompt_id": p, "image_index": i, "flagged": False} for m, p, i in keys],
        schema_overrides={"prompt_id": pl.Int32, "image_index": pl.Int32},
    )
    joined = with_degenerate(judged, degenerate.lazy()).collect()
    assert list(zip(joined["mitigation"], joined["prompt_id"], joined["image_index"])) == keys
