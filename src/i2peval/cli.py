"""The ``i2peval`` command line: one subcommand per entry of COMMANDS.

A user's mistake (a bad argument, a missing or malformed file: argparse errors and
`I2PEvalError`) prints one line naming it on stderr and exits with status 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from i2peval.errors import I2PEvalError
from i2peval.plan import I2P_SET, METRICS_DIR, REPORT, set_folder

USAGE_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, its arguments and what it does."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, argparse.ArgumentParser], None]


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    from i2peval.metrics.degenerate import POLICIES
    from i2peval.metrics.harness_csv import HARNESS_PROFILE

    parser.add_argument("flags", type=Path, help="image_flags.parquet (results/metrics/)")
    parser.add_argument("prompts", type=Path, help="prompts.parquet, the prompt table of the same run")
    parser.add_argument("output_dir", type=Path, help="folder for the CSVs, one per condition: MODEL+MITIGATION.csv")
    parser.add_argument("--profile", default=HARNESS_PROFILE, help="judge profile to export (default: %(default)s)")
    parser.add_argument(
        "--degenerate-policy",
        choices=POLICIES,
        default="judged",
        help="degenerate images: judged as any image, as the harness did (default), counted as "
        "inappropriate, or excluded",
    )
    parser.add_argument(
        "--drop-unscored",
        action="store_true",
        help="leave out images without a verdict instead of refusing (results_I2P.py then sees too few rows)",
    )


def _export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    import polars as pl

    from i2peval.judges.registry import IMAGE_FLAGS
    from i2peval.metrics.aggregate import check_flags_prompts
    from i2peval.metrics.harness_csv import export_harness_csvs
    from i2peval.schemas import PROMPTS, read_table

    check_flags_prompts(args.flags, args.prompts)
    flags = pl.from_arrow(read_table(args.flags, IMAGE_FLAGS))
    prompts = pl.from_arrow(read_table(args.prompts, PROMPTS))
    for path in export_harness_csvs(
        flags, prompts, args.output_dir, args.profile, args.degenerate_policy, args.drop_unscored, args.flags
    ):
        print(path)


def _run_spec(value: str) -> tuple[str, str, Path]:
    model, _, rest = value.partition(":")
    mitigation, _, csv = rest.partition(":")
    if not (model and mitigation and csv):
        raise argparse.ArgumentTypeError(f"{value!r} is not MODEL:MITIGATION:CSV")
    return model, mitigation, Path(csv)


def _import_arguments(parser: argparse.ArgumentParser) -> None:
    from i2peval.metrics.harness_csv import IMPORT_PROFILE

    parser.add_argument("csv", type=Path, nargs="?", help="a harness run CSV (or a folder of them) of one condition")
    parser.add_argument("--model", help="model of the positional CSV")
    parser.add_argument("--mitigation", help="mitigation of the positional CSV")
    parser.add_argument(
        "--run",
        type=_run_spec,
        action="append",
        default=[],
        metavar="MODEL:MITIGATION:CSV",
        help="one more condition's CSV (or folder); repeat for several",
    )
    parser.add_argument("--prompts", type=Path, required=True, help="prompts.parquet the run's prompts are matched to")
    parser.add_argument("--output", type=Path, required=True, help="image flags parquet to write")
    parser.add_argument(
        "--profile", default=IMPORT_PROFILE, help="profile name of the imported verdicts (default: %(default)s)"
    )
    parser.add_argument(
        "--allow-missing-prompts",
        action="store_true",
        help="accept runs that cover only some prompts (e.g. one category)",
    )


def _import_runs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[tuple[str, str, Path]]:
    runs = list(args.run)
    if args.csv is not None:
        if not (args.model and args.mitigation):
            parser.error(f"{args.csv} needs --model and --mitigation")
        runs.insert(0, (args.model, args.mitigation, args.csv))
    elif args.model or args.mitigation:
        parser.error("--model and --mitigation name the positional CSV, which is missing")
    if not runs:
        parser.error("give a CSV with --model and --mitigation, or --run MODEL:MITIGATION:CSV")
    conditions = [(model, mitigation) for model, mitigation, _ in runs]
    repeated = sorted({condition for condition in conditions if conditions.count(condition) > 1})
    if repeated:
        parser.error(f"conditions given more than once: {', '.join(f'{m}:{x}' for m, x in repeated)}")
    return runs


def _import(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    import polars as pl
    import pyarrow as pa

    from i2peval.judges.registry import IMAGE_FLAGS
    from i2peval.metrics.aggregate import prompt_table_metadata
    from i2peval.metrics.harness_csv import import_harness_csv
    from i2peval.schemas import PROMPTS, read_table, write_table

    runs = _import_runs(args, parser)
    folders = args.output.resolve().parents
    run = folders[min(2, len(folders) - 1)]
    if folders[0] == run / METRICS_DIR.format(setdir="") and (run / ".snakemake").is_dir():
        raise I2PEvalError(
            f"{args.output}: --output is in the metrics folder of the workflow run in {run} (Snakemake would build "
            "its report on it as its own): write to another path"
        )
    prompts = pl.from_arrow(read_table(args.prompts, PROMPTS))
    tables = [
        import_harness_csv(csv, prompts, model, mitigation, args.profile, args.allow_missing_prompts)
        for model, mitigation, csv in runs
    ]
    flags = pa.concat_tables(tables)
    try:
        write_table(flags, args.output, IMAGE_FLAGS, metadata=prompt_table_metadata(args.prompts))
    except OSError as error:
        raise I2PEvalError(f"{args.output}: cannot write ({error.strerror})") from None
    print(f"{args.output}: {flags.num_rows} image flags of {len(tables)} conditions under profile {args.profile!r}")


def _metrics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="the run's configuration (required unless --flags)")
    parser.add_argument("--directory", type=Path, default=Path("."), help="the run's working directory (default: .)")
    parser.add_argument(
        "--flags", type=Path, help="image flags to measure instead of the run's scores (e.g. from import-harness-csv)"
    )
    parser.add_argument("--prompts", type=Path, help="prompts.parquet of the flags (with --flags)")
    parser.add_argument(PROMPT_SET_OPTION, help=PROMPT_SET_HELP)
    parser.add_argument(
        "--baseline", help="the mitigation the others are compared with (default: the one of kind none)"
    )
    parser.add_argument(
        "--output-dir", type=Path, required=True, help="folder for metrics, comparisons, alignment, image_flags"
    )


def _metrics(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from dataclasses import replace

    from i2peval.metrics.aggregate import StudySettings
    from i2peval.metrics.rerun import metrics_of_flags, metrics_of_run

    if args.flags is None and args.config is None:
        parser.error("give the run's --config, or --flags with --prompts")
    if args.flags is not None and args.prompts is None:
        parser.error("--flags needs --prompts")
    named = METRICS_DIR.format(setdir=set_folder(args.prompt_set or I2P_SET))
    _not_the_workflows(args.output_dir, args.directory, named, "--output-dir")
    study = _study(args.config, args.directory, args.prompt_set) if args.config is not None else None
    if study is not None:
        _not_the_workflows(args.output_dir, args.directory, study.metrics_dir, "--output-dir")
    try:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise I2PEvalError(f"{args.output_dir}: cannot create the folder ({error.strerror})") from None
    if study is None:
        settings = StudySettings(baseline=args.baseline)
    else:
        settings = replace(study.judging.settings, baseline=args.baseline or study.baseline)
    if args.flags is not None:
        prompt_set = study.prompt_set if study is not None else args.prompt_set or I2P_SET
        outputs = metrics_of_flags(args.flags, args.prompts, args.output_dir, settings, prompt_set)
    else:
        judging = replace(study.judging, settings=settings)
        outputs = metrics_of_run(study.run_files(args.directory), judging, args.output_dir)
    for path in outputs.values():
        print(path)


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="the run's configuration")
    parser.add_argument("--directory", type=Path, default=Path("."), help="the run's working directory (default: .)")
    parser.add_argument(
        "--metrics-dir",
        type=Path,
        help="tables to report (default: the run's results/metrics; e.g. an i2peval metrics --output-dir)",
    )
    parser.add_argument(PROMPT_SET_OPTION, help=PROMPT_SET_HELP)
    parser.add_argument("--output", type=Path, required=True, help="the HTML file to write")


def _report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from i2peval.metrics.rerun import RunError
    from i2peval.report.run import missing_files, report_files, report_run

    if args.output.is_dir():
        raise I2PEvalError(f"{args.output} is a folder: --output is the HTML file to write")
    named = REPORT.format(setdir=set_folder(args.prompt_set or I2P_SET))
    _not_the_workflows(args.output, args.directory, named, "--output")
    study = _study(args.config, args.directory, args.prompt_set)
    _not_the_workflows(args.output, args.directory, study.report_path, "--output")
    files = report_files(study, args.directory, args.metrics_dir)
    missing = missing_files(files)
    if missing:
        raise RunError(
            f"{missing[0]}: missing ({len(missing)} of the files the report reads are): is this the run's "
            "directory and configuration, and has its aggregate step run?"
        )
    report_run(study, files, args.output)
    print(args.output)


def _not_the_workflows(path: Path, directory: Path, output: str, option: str) -> None:
    """Refuse to write where the workflow writes: Snakemake would take the command's tables
    (or report) for its own and build on them."""
    if path.resolve() == (directory / output).resolve():
        raise I2PEvalError(
            f"{path}: {option} is where the workflow writes its own {output} (Snakemake would build on it as "
            "its own): write to another path; i2peval report --metrics-dir reads tables from any folder"
        )


PROMPT_SET_OPTION = "--prompt-set"
PROMPT_SET_HELP = "the prompt set of a study with several (default: i2p, where configured, else the first)"


def _study(config: Path, directory: Path, prompt_set: str | None = None):
    """The study of one prompt set of the run's configuration file; its relative paths
    are read against the run's `directory`, as Snakemake reads them."""
    from i2peval.config import load_config
    from i2peval.study import Study

    return Study.from_config(load_config(config), directory, prompt_set)


COMMANDS: tuple[Command, ...] = (
    Command(
        "metrics",
        "recompute the metrics and paired comparisons from a run's stored scores (or from image flags)",
        _metrics_arguments,
        _metrics,
    ),
    Command("report", "render a run's report from its stored metrics (or recomputed ones)", _report_arguments, _report),
    Command(
        "export-harness-csv",
        "write the official harness's run CSV per condition, for its results_I2P.py",
        _export_arguments,
        _export,
    ),
    Command(
        "import-harness-csv",
        "read the official harness's run CSVs into image flags",
        _import_arguments,
        _import,
    ),
)


def build_parser() -> OneLineParser:
    """The top-level parser, with a subparser per command (its Command in ``args.command``)."""
    parser = OneLineParser(
        prog="i2peval", description="Inappropriate image generation on I2P: tools beside the workflow."
    )
    subparsers = parser.add_subparsers(required=True, metavar="COMMAND")
    for command in COMMANDS:
        subparser = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(subparser)
        subparser.set_defaults(command=command, parser=subparser)
    return parser


def one_line(error: Exception) -> str:
    """The error's message on one line."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.command.run(args, args.parser)
    except I2PEvalError as error:
        print(f"{args.parser.prog}: error: {one_line(error)}", file=sys.stderr)
        return USAGE_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
