"""The installed ``i2peval`` console script, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from harness_data import CONDITIONS, image_flags, prompt_table

from i2peval.judges.registry import IMAGE_FLAGS
from i2peval.prompts.demo import write_demo_prompt_csv
from i2peval.schemas import PROMPTS, read_table, write_table

I2PEVAL = Path(sys.executable).parent / "i2peval"


def i2peval(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([I2PEVAL, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def stored(tmp_path):
    """image_flags.parquet and prompts.parquet as the workflow stores them."""
    flags, prompts = tmp_path / "image_flags.parquet", tmp_path / "prompts.parquet"
    write_table(image_flags().to_arrow(), flags, IMAGE_FLAGS)
    write_table(prompt_table().to_arrow(), prompts, PROMPTS)
    return flags, prompts


def assert_one_line_error(result: subprocess.CompletedProcess, *named: str | Path) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for name in named:
        assert str(name) in result.stderr


def test_export_then_import_through_the_command_line_round_trips(stored, tmp_path):
    flags, prompts = stored
    exported = i2peval("export-harness-csv", flags, prompts, tmp_path / "runs", "--profile", "q16-0.9")
    assert exported.returncode == 0, exported.stderr
    csvs = [Path(line) for line in exported.stdout.splitlines()]
    assert [path.name for path in csvs] == [f"{model}+{mitigation}.csv" for model, mitigation in sorted(CONDITIONS)]
    (first_model, first_mitigation), *others = sorted(CONDITIONS)
    runs = [
        arg for (model, mitigation), csv in zip(others, csvs[1:]) for arg in ("--run", f"{model}:{mitigation}:{csv}")
    ]
    output = tmp_path / "imported.parquet"
    imported = i2peval(
        "import-harness-csv", csvs[0], "--model", first_model, "--mitigation", first_mitigation,
        *runs, "--prompts", prompts, "--profile", "harness", "--output", output,
    )
    assert imported.returncode == 0, imported.stderr
    assert str(output) in imported.stdout
    keys = ["model", "mitigation", "prompt_id", "image_index"]
    back = pl.from_arrow(read_table(output, IMAGE_FLAGS))
    original = image_flags().filter(profile="q16-0.9")
    assert back["profile"].unique().to_list() == ["harness"]
    assert back.select(*keys, "flagged").sort(keys).equals(original.select(*keys, "flagged").sort(keys))

    # the imported flags refer to their prompt table: another run's is refused, by name
    other = tmp_path / "other-prompts.parquet"
    write_table(prompt_table().with_columns(pl.col("text").reverse()).to_arrow(), other, PROMPTS)
    for command in (
        ["export-harness-csv", output, other, tmp_path / "again"],
        ["metrics", "--flags", output, "--prompts", other, "--output-dir", tmp_path / "m"],
    ):
        assert_one_line_error(i2peval(*command), f"{output} was made with another prompt table than {other}")


def test_import_never_writes_into_a_workflow_runs_metrics(stored, tmp_path):
    flags, prompts = stored
    exported = i2peval("export-harness-csv", flags, prompts, tmp_path / "runs")
    csv = Path(exported.stdout.splitlines()[0])
    (tmp_path / "run" / ".snakemake").mkdir(parents=True)
    output = tmp_path / "run" / "results" / "metrics" / "image_flags.parquet"
    model, mitigation = csv.stem.split("+")
    result = i2peval("import-harness-csv", csv, "--model", model, "--mitigation", mitigation, "--prompts", prompts,
                     "--output", output)
    assert_one_line_error(result, f"{output}: --output is in the metrics folder of the workflow run")
    assert not output.exists()


def test_a_missing_input_file_is_named_in_one_line_with_status_2(stored, tmp_path):
    flags, prompts = stored
    missing = tmp_path / "no-such-flags.parquet"
    assert_one_line_error(i2peval("export-harness-csv", missing, prompts, tmp_path / "runs"), missing)
    csv = tmp_path / "no-such-run.csv"
    result = i2peval(
        "import-harness-csv", "--run", f"tiny-a:none:{csv}", "--prompts", prompts, "--output", tmp_path / "o.parquet"
    )
    assert_one_line_error(result, csv)
    assert not (tmp_path / "o.parquet").exists()


def test_flags_the_export_cannot_write_are_named_with_their_file(stored, tmp_path):
    flags, prompts = stored
    unscored = image_flags().with_columns(
        flagged=pl.when(pl.col("prompt_id") == 0).then(None).otherwise(pl.col("flagged"))
    )
    write_table(unscored.to_arrow(), flags, IMAGE_FLAGS)
    result = i2peval("export-harness-csv", flags, prompts, tmp_path / "runs")
    assert_one_line_error(result, f"{flags}: tiny-a x none under profile 'paper': 3 unscored images")
    assert i2peval("export-harness-csv", flags, prompts, tmp_path / "runs", "--drop-unscored").returncode == 0


def test_a_bad_row_is_named_with_its_file(stored, tmp_path):
    flags, prompts = stored
    (csv,) = [Path(line) for line in i2peval("export-harness-csv", flags, prompts, tmp_path).stdout.splitlines()][:1]
    lines = csv.read_text().splitlines()
    lines[3] = lines[3].replace("False", "maybe").replace("True", "maybe")
    csv.write_text("\n".join(lines) + "\n")
    result = i2peval(
        "import-harness-csv", csv, "--model", "m", "--mitigation", "x", "--prompts", prompts,
        "--output", tmp_path / "o.parquet",
    )
    assert_one_line_error(result, f"{csv}: row 2: unsafe is 'maybe'")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["import-harness-csv", "--run", "tiny-a:run.csv", "--prompts", "p", "--output", "o"],
         "'tiny-a:run.csv' is not MODEL:MITIGATION:CSV"),
        (["import-harness-csv", "run.csv", "--prompts", "p", "--output", "o"],
         "run.csv needs --model and --mitigation"),
        (["import-harness-csv", "--run", "a:b:1.csv", "--run", "a:b:2.csv", "--prompts", "p", "--output", "o"],
         "given more than once: a:b"),
        (["import-harness-csv", "--run", "a:b:1.csv", "--output", "o"], "required: --prompts"),
        (["export-harness-csv", "f", "p", "out", "--degenerate-policy", "drop"], "invalid choice: 'drop'"),
        (["no-such-command"], "invalid choice: 'no-such-command'"),
    ],
)
def test_bad_arguments_get_one_line_naming_them_and_status_2(args, named):
    assert_one_line_error(i2peval(*args), named)


def test_metrics_of_a_harness_run_equal_ours_of_the_same_verdicts(stored, tmp_path):
    # the harness's runs get our statistics: export one profile's verdicts as harness CSVs,
    # import them, measure them; the numbers are those of the profile's own verdicts
    flags, prompts = stored
    exported = i2peval("export-harness-csv", flags, prompts, tmp_path / "runs", "--profile", "q16-0.9")
    runs = [
        arg
        for line in exported.stdout.splitlines()
        for model, mitigation in [Path(line).stem.split("+")]
        for arg in ("--run", f"{model}:{mitigation}:{line}")
    ]
    imported = tmp_path / "imported.parquet"
    assert i2peval(
        "import-harness-csv", *runs, "--prompts", prompts, "--profile", "q16-0.9", "--output", imported
    ).returncode == 0
    only_profile = tmp_path / "q16.parquet"
    write_table(image_flags().filter(profile="q16-0.9").to_arrow(), only_profile, IMAGE_FLAGS)
    tables = {}
    for name, source in (("harness", imported), ("ours", only_profile)):
        result = i2peval(
            "metrics", "--flags", source, "--prompts", prompts, "--baseline", "none", "--output-dir", tmp_path / name
        )
        assert result.returncode == 0, result.stderr
        tables[name] = {
            table: pl.read_parquet(tmp_path / name / f"{table}.parquet") for table in ("metrics", "comparisons")
        }
    for table in ("metrics", "comparisons"):
        assert tables["harness"][table].height > 0
        assert tables["harness"][table].equals(tables["ours"][table]), table
    assert set(tables["harness"]["comparisons"]["mitigation"]) == {"sega-strong"}


@pytest.mark.parametrize(
    "args, named",
    [
        (["--output-dir", "out"], ["--config"]),
        (["--flags", "missing.parquet", "--prompts", "p.parquet", "--output-dir", "out"], ["missing.parquet"]),
        (["--config", "nowhere.yaml", "--output-dir", "out"], ["nowhere.yaml"]),
        (
            ["--flags", "f.parquet", "--prompts", "p.parquet", "--output-dir", "results/metrics"],
            ["results/metrics: --output-dir is where the workflow writes its own results/metrics"],
        ),
    ],
)
def test_metrics_with_bad_arguments_is_one_line_naming_them(args, named, tmp_path):
    result = subprocess.run([I2PEVAL, "metrics", *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert_one_line_error(result, *named)


def test_report_of_a_folder_that_holds_no_run_names_the_first_missing_file(tmp_path):
    config = Path(__file__).parents[1] / "demo" / "config.yaml"
    result = i2peval("report", "--config", config, "--directory", tmp_path, "--output", tmp_path / "report.html")
    assert_one_line_error(result, tmp_path / "results" / "metrics" / "metrics.parquet")
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize(
    "args, named",
    [
        (["--output", "r.html"], ["--config"]),
        (["--config", "nowhere.yaml", "--output", "r.html"], ["nowhere.yaml"]),
        (
            ["--config", "nowhere.yaml", "--directory", "run", "--output", "run/results/report.html"],
            ["run/results/report.html: --output is where the workflow writes its own results/report.html"],
        ),
    ],
)
def test_report_with_bad_arguments_is_one_line_naming_them(args, named, tmp_path):
    result = subprocess.run([I2PEVAL, "report", *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert_one_line_error(result, *named)


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", ["cannot read the configuration"]),
        (b"prompts:\n  source: demo\n  shards: [1\nmodels: {}\n", ["not valid YAML at line"]),
        (b"prompts: {source: demo}\nprompts: {source: hub}\n", ["key 'prompts' is written twice", "lines 1 and 2"]),
        (
            b"prompts: {source: demo}\nmodels: {}\nmitigations: {none: {kind: none}}\n",
            ["models: {} should be non-empty"],
        ),
    ],
)
def test_a_bad_configuration_is_one_line_naming_the_file_and_what_is_wrong(content, named, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    for command in (["metrics", "--output-dir", tmp_path / "out"], ["report", "--output", tmp_path / "r.html"]):
        result = i2peval(*command, "--config", config)
        assert_one_line_error(result, config, *named)


def test_a_relative_prompt_file_is_read_from_the_runs_folder_as_snakemake_reads_it(tmp_path):
    run = tmp_path / "run"
    write_demo_prompt_csv(run / "prompts.csv")
    config = yaml.safe_load((Path(__file__).parents[1] / "demo" / "config.yaml").read_text())
    config.pop("prompt_sets")
    config["prompts"] = {"source": "csv", "csv": "prompts.csv", "shards": 1}
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    # from a folder without prompts.csv: the run's own copy is found (the run has no tables yet)
    result = i2peval("report", "--config", config_path, "--directory", run, "--output", tmp_path / "r.html")
    assert_one_line_error(result, run / "results" / "metrics" / "metrics.parquet")


def test_a_report_output_that_is_a_folder_is_named(tmp_path):
    config = Path(__file__).parents[1] / "demo" / "config.yaml"
    result = i2peval("report", "--config", config, "--directory", tmp_path, "--output", tmp_path)
    assert_one_line_error(result, f"{tmp_path} is a folder")


def test_metrics_with_a_baseline_the_flags_lack_names_it(stored, tmp_path):
    flags, prompts = stored
    result = i2peval("metrics", "--flags", flags, "--prompts", prompts, "--baseline", "plain", "--output-dir", tmp_path)
    assert_one_line_error(result, "'plain'", flags)
