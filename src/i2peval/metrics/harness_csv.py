"""The official harness's run CSV (ml-research/i2p): our image flags out, its runs in
(docs/protocol.md#metrics).

eval_I2P.py writes one CSV per run with pandas' ``DataFrame.to_csv``: a leading unnamed
index column, then ``prompt`` (the dataset's text), ``categories`` (the dataset's string,
labels joined by ", "), ``idx_generation`` (0 .. 9, the image's place among its prompt's
images) and ``unsafe`` (``True``/``False``: Q16 OR NudeNet v2), one row per image, prompts
in dataset order. results_I2P.py reads it with ``pd.read_csv``, asserts 47,030 rows
(4,703 prompts x 10 images), finds a category's rows with ``categories.str.contains``,
and merges prompts by text (``groupby('prompt')``) for EMI.

Export writes exactly that, per model x mitigation, from one judge profile's flags
(default: ``paper``, the harness's rule), rows by prompt_id then image_index:

- the text is our normalised prompt text (prompts/i2p.py), the categories our labels
  joined by ", ", ``unsafe`` the profile's verdict;
- degenerate images are exported as judged, as the harness judged every image, unless a
  degenerate-image policy (metrics/degenerate.py) says otherwise (``exclude`` drops them);
- a text that pandas reads as missing (the empty text, "NA", "None") is written as it is;
  results_I2P.py's EMI then leaves that prompt out, as it would in a harness run;
- an unscored image (null verdict) cannot be written as True or False: export refuses,
  naming the count, unless asked to drop unscored images; then results_I2P.py's assertion
  of 47,030 rows fails for a full study (as it does for any run other than 4,703 x 10).

Import reads such a CSV (or, like results_I2P.py, every ``*.csv`` of a folder, in sorted
order) into IMAGE_FLAGS rows of one model x mitigation under a profile name of its own
(default ``harness-import``): ``idx_generation`` becomes ``image_index`` (an index only:
the harness seeded its images otherwise, generation/seeds.py), ``unsafe`` the verdict, the
judge columns and ``degenerate`` stay null. Rows are matched to prompt ids by normalised
text. I2P repeats some texts under other seeds and the CSV cannot tell them apart: the
k-th row of a text with a given idx_generation, in file order, goes to the k-th smallest
prompt_id with that text (the harness writes prompts in dataset order, so this is the
right one); a text with more rows per idx_generation than it has prompt ids is refused.
Every prompt of the file must have the images idx_generation 0 .. n - 1 that most of its
prompts have, and by default every prompt of the prompts table must be in the file (a run
the harness saved part-way, as it does every 100 rows, is refused). Errors name the file
and the row (counted from 0 after the header, as the harness's own index column counts).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa

from i2peval.errors import I2PEvalError
from i2peval.judges.registry import FLAG_JUDGES, IMAGE_FLAGS
from i2peval.metrics.degenerate import apply_policy
from i2peval.prompts.i2p import normalise_text
from i2peval.storage import atomic_write

HARNESS_COLUMNS = ("prompt", "categories", "idx_generation", "unsafe")
HARNESS_PROFILE = "paper"
IMPORT_PROFILE = "harness-import"
CATEGORY_SEPARATOR = ", "
UNSAFE_VALUES = {"True": True, "False": False, "true": True, "false": False, "1": True, "0": False}


class HarnessCsvError(I2PEvalError, ValueError):
    """A harness run CSV, or the flags to export as one, is not what the other side expects."""


def harness_csv_name(model: str, mitigation: str) -> str:
    """File name of one condition's run CSV (config names never contain "+")."""
    return f"{model}+{mitigation}.csv"


def _preview(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def harness_rows(
    flags: pl.DataFrame,
    prompts: pl.DataFrame,
    model: str,
    mitigation: str,
    profile: str = HARNESS_PROFILE,
    degenerate_policy: str = "judged",
    drop_unscored: bool = False,
    source: str | Path = "image flags",
) -> pl.DataFrame:
    """The run CSV of one condition: "" (the index), prompt, categories, idx_generation, unsafe.

    `flags` are IMAGE_FLAGS rows (any profiles and conditions) read from `source` (errors
    name it), `prompts` the PROMPTS table.
    """
    condition = f"{source}: {model} x {mitigation} under profile {profile!r}"
    chosen = flags.filter(
        (pl.col("profile") == profile) & (pl.col("model") == model) & (pl.col("mitigation") == mitigation)
    )
    if chosen.is_empty():
        raise HarnessCsvError(f"{condition}: no rows")
    duplicated = chosen.filter(pl.struct("prompt_id", "image_index").is_duplicated())
    if not duplicated.is_empty():
        first = duplicated.row(0, named=True)
        raise HarnessCsvError(
            f"{condition}: {duplicated.height} rows repeat an image, first prompt_id {first['prompt_id']} "
            f"image_index {first['image_index']}"
        )
    chosen = apply_policy(chosen.lazy(), degenerate_policy, {}).collect()
    unscored = chosen.filter(pl.col("flagged").is_null())
    if not unscored.is_empty():
        if not drop_unscored:
            first = unscored.sort("prompt_id", "image_index").row(0, named=True)
            raise HarnessCsvError(
                f"{condition}: {unscored.height} unscored images (null verdict, first prompt_id "
                f"{first['prompt_id']} image_index {first['image_index']}) cannot be written as unsafe "
                "True or False; drop them explicitly (results_I2P.py's row count assertion then fails)"
            )
        chosen = chosen.filter(pl.col("flagged").is_not_null())
    rows = chosen.join(prompts.select("prompt_id", "text", "categories"), on="prompt_id", how="left", validate="m:1")
    unknown = rows.filter(pl.col("text").is_null())
    if not unknown.is_empty():
        raise HarnessCsvError(
            f"{condition}: {unknown['prompt_id'].n_unique()} prompt ids are not in the prompts table, "
            f"first {unknown['prompt_id'].min()}"
        )
    uncategorised = rows.filter(pl.col("categories").list.len() == 0)
    if not uncategorised.is_empty():
        raise HarnessCsvError(
            f"{condition}: prompt_id {uncategorised['prompt_id'].min()} has no category; "
            "results_I2P.py cannot read a run with an empty categories field"
        )
    return (
        rows.sort("prompt_id", "image_index")
        .select(
            pl.int_range(pl.len(), dtype=pl.Int64).alias(""),
            pl.col("text").alias("prompt"),
            pl.col("categories").list.join(CATEGORY_SEPARATOR).alias("categories"),
            pl.col("image_index").alias("idx_generation"),
            pl.when(pl.col("flagged")).then(pl.lit("True")).otherwise(pl.lit("False")).alias("unsafe"),
        )
    )


def export_harness_csvs(
    flags: pl.DataFrame,
    prompts: pl.DataFrame,
    output_dir: str | Path,
    profile: str = HARNESS_PROFILE,
    degenerate_policy: str = "judged",
    drop_unscored: bool = False,
    source: str | Path = "image flags",
) -> list[Path]:
    """Write one run CSV per model x mitigation of `profile` into `output_dir`; return the paths."""
    profiles = sorted(flags["profile"].unique().to_list())
    if profile not in profiles:
        raise HarnessCsvError(f"{source}: no profile {profile!r}; the profiles are {profiles}")
    conditions = (
        flags.filter(pl.col("profile") == profile).select("model", "mitigation").unique().sort("model", "mitigation")
    )
    tables = {
        harness_csv_name(model, mitigation): harness_rows(
            flags, prompts, model, mitigation, profile, degenerate_policy, drop_unscored, source
        )
        for model, mitigation in conditions.iter_rows()
    }
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HarnessCsvError(f"{output_dir}: cannot create the output folder ({error.strerror})") from None
    paths = []
    for name, table in tables.items():
        paths.append(output_dir / name)
        write_harness_csv(table, paths[-1])
    return paths


def write_harness_csv(rows: pl.DataFrame, path: Path) -> None:
    """Write `harness_rows` as pandas' to_csv does: the index column's header is empty."""

    def write(partial: Path) -> None:
        with open(partial, "w", encoding="utf-8", newline="") as file:
            file.write(",".join(rows.columns) + "\n")
            rows.write_csv(file, include_header=False)

    atomic_write(path, write)


def _csv_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.csv"))
        if not files:
            raise HarnessCsvError(f"{path}: folder holds no *.csv file")
        return files
    if not path.is_file():
        raise HarnessCsvError(f"{path}: missing")
    return [path]


def _read_one(path: Path) -> pl.DataFrame:
    try:
        raw = pl.read_csv(path, infer_schema=False, empty_string_is_null=False)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as error:
        reason = str(error).splitlines()[0].split(" Consider ")[0]
        raise HarnessCsvError(
            f"{path}: cannot read as a comma-separated CSV, as the harness writes it ({reason}): save it with "
            "commas between the fields (a spreadsheet may have used semicolons)"
        ) from None
    missing = [column for column in HARNESS_COLUMNS if column not in raw.columns]
    if missing and len(raw.columns) == 1 and ";" in raw.columns[0]:
        raise HarnessCsvError(
            f"{path}: its fields are separated by semicolons; the harness writes commas: save it with commas"
        )
    if missing:
        raise HarnessCsvError(f"{path}: missing columns {missing}; found {raw.columns}")
    if raw.is_empty():
        raise HarnessCsvError(f"{path}: no rows")
    return raw.select(
        pl.lit(str(path)).alias("file"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
        pl.col(HARNESS_COLUMNS).fill_null(""),
    )


def read_harness_csv(path: str | Path) -> pl.DataFrame:
    """file, row, prompt, categories, idx_generation, unsafe (as strings) of a run CSV or folder."""
    return pl.concat([_read_one(file) for file in _csv_files(Path(path))])


def _fail_at(rows: pl.DataFrame, message: str) -> None:
    """Raise naming the first of `rows` (file and row columns) when there are any."""
    if not rows.is_empty():
        first = rows.row(0, named=True)
        raise HarnessCsvError(f"{first['file']}: row {first['row']}: {message.format(**first)}")


def _parsed(runs: pl.DataFrame) -> pl.DataFrame:
    """The rows with idx_generation as an integer, unsafe as a bool and the text normalised."""
    _fail_at(
        runs.filter(~pl.col("idx_generation").str.contains(r"^\d{1,9}$")),
        "idx_generation is {idx_generation!r}, not an image index (0, 1, ...)",
    )
    _fail_at(
        runs.filter(~pl.col("unsafe").is_in(list(UNSAFE_VALUES))),
        "unsafe is {unsafe!r}, not True/False/1/0",
    )
    texts = runs["prompt"].unique().to_list()
    return runs.with_columns(
        text=pl.col("prompt").replace_strict(texts, [normalise_text(text) for text in texts]),
        image_index=pl.col("idx_generation").cast(pl.Int32),
        flagged=pl.col("unsafe").replace_strict(UNSAFE_VALUES, return_dtype=pl.Boolean),
    )


def _matched(runs: pl.DataFrame, prompts: pl.DataFrame) -> pl.DataFrame:
    """`runs` with the prompt_id of each row: the k-th row of a text and idx_generation, in
    file order, goes to the k-th smallest prompt_id with that text."""
    ids = prompts.select(
        "text",
        "prompt_id",
        pl.col("categories").list.sort().alias("expected_categories"),
        occurrence=(pl.col("prompt_id").rank("ordinal").over("text") - 1).cast(pl.UInt32),
        ids_with_text=pl.len().over("text").cast(pl.UInt32),
    )
    _fail_at(
        runs.join(ids.select("text").unique(), on="text", how="anti", maintain_order="left"),
        "prompt {prompt!r} is not in the prompts table",
    )
    runs = runs.with_columns(occurrence=(pl.int_range(pl.len()).over("text", "image_index")).cast(pl.UInt32))
    counted = runs.join(ids.select("text", "ids_with_text").unique(), on="text", maintain_order="left")
    _fail_at(
        counted.filter(pl.col("occurrence") >= pl.col("ids_with_text")),
        "prompt {prompt!r} with idx_generation {idx_generation} repeats an earlier row "
        "({ids_with_text} prompt ids in the prompts table have this text)",
    )
    matched = runs.join(ids, on=["text", "occurrence"], maintain_order="left")
    _fail_at(
        matched.filter(
            pl.col("categories").str.split(",").list.eval(pl.element().str.strip_chars()).list.sort()
            != pl.col("expected_categories")
        ),
        "categories {categories!r} differ from the prompts table's for prompt_id {prompt_id}",
    )
    return matched


def _check_images(matched: pl.DataFrame, prompts: pl.DataFrame, allow_missing_prompts: bool) -> None:
    """Every prompt of the file has the images 0 .. n - 1 that most of its prompts have; every
    prompt of the table is there (unless allowed)."""
    per_prompt = matched.group_by("prompt_id").agg(
        pl.col("file").first(), pl.col("row").min(), pl.col("prompt").first(), pl.col("image_index").sort(), n=pl.len()
    )
    images = per_prompt["n"].mode().max()
    _fail_at(
        per_prompt.filter((pl.col("n") != images) | (pl.col("image_index").list.max() >= images)).sort("row"),
        "prompt {prompt!r} (prompt_id {prompt_id}, first row here) has idx_generation {image_index}; "
        f"most prompts of the file have 0 .. {images - 1}",
    )
    absent = prompts.join(per_prompt, on="prompt_id", how="anti").sort("prompt_id")
    if not allow_missing_prompts and not absent.is_empty():
        first = absent.row(0, named=True)
        files = ", ".join(matched["file"].unique(maintain_order=True))
        raise HarnessCsvError(
            f"{files}: {absent.height} of {prompts.height} prompts of the prompts table are missing, first "
            f"prompt_id {first['prompt_id']} {_preview(first['text'])} (a run saved part-way, or one category)"
        )


def harness_flags(
    runs: pl.DataFrame,
    prompts: pl.DataFrame,
    model: str,
    mitigation: str,
    profile: str = IMPORT_PROFILE,
    allow_missing_prompts: bool = False,
) -> pa.Table:
    """IMAGE_FLAGS rows of one condition from a run read by `read_harness_csv`."""
    matched = _matched(_parsed(runs), prompts.select("prompt_id", "text", "categories"))
    _check_images(matched, prompts, allow_missing_prompts)
    frame = matched.sort("prompt_id", "image_index").select(
        profile=pl.lit(profile),
        model=pl.lit(model),
        mitigation=pl.lit(mitigation),
        prompt_id=pl.col("prompt_id"),
        image_index=pl.col("image_index"),
        flagged=pl.col("flagged"),
        **{judge: pl.lit(None, dtype=pl.Boolean) for judge in FLAG_JUDGES},
        degenerate=pl.lit(None, dtype=pl.String),
    )
    return frame.to_arrow().cast(IMAGE_FLAGS)


def import_harness_csv(
    path: str | Path,
    prompts: pl.DataFrame,
    model: str,
    mitigation: str,
    profile: str = IMPORT_PROFILE,
    allow_missing_prompts: bool = False,
) -> pa.Table:
    """IMAGE_FLAGS rows of one condition from a harness run CSV (or a folder of them)."""
    return harness_flags(read_harness_csv(path), prompts, model, mitigation, profile, allow_missing_prompts)
