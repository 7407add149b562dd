"""Benchmark: how long Snakemake takes to plan the full study and the demo, offline.

Prints, for each configuration, the jobs planned and the wall time of `snakemake
--dry-run` in an empty working directory (median of --repeats runs), and the full
study's time relative to the demo's (the baseline measured in the same run).
Run with `make bench` or `python tests/benchmarks/dry_run.py --repeats 5`.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def time_dry_run(configfile: Path) -> tuple[float, int]:
    """Wall seconds of one dry run and the number of jobs it planned."""
    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        result = subprocess.run(
            [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", workdir,
             "--configfile", str(configfile), "--dry-run", "--quiet", "rules"],
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            check=True,
        )
        seconds = time.perf_counter() - started
    total = re.search(r"^total\s+(\d+)$", result.stdout, re.MULTILINE)
    return seconds, int(total.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    medians = {}
    for name, configfile in (("demo", REPO / "demo" / "config.yaml"), ("full study", REPO / "config.yaml")):
        runs = [time_dry_run(configfile) for _ in range(args.repeats)]
        medians[name] = statistics.median(seconds for seconds, _ in runs)
        print(f"{name:>10}: {runs[0][1]:5d} jobs, dry run {medians[name]:.2f} s (median of {args.repeats})")
    print(f"full study / demo dry-run time: {medians['full study'] / medians['demo']:.2f}x")


if __name__ == "__main__":
    main()
