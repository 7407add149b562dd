"""Benchmark: how long and how much memory Snakemake takes to plan the full study, offline.

Runs `snakemake --dry-run --quiet rules` on config.yaml (the paper-scale study) and on
the demo (the baseline: Snakemake's fixed start-up cost) in empty working directories,
--repeats times each, and prints the jobs planned, the median wall and CPU time and the
peak resident memory of each, and the full study's time relative to the demo's. Targets
for the full study: under 3 s and 500 MB on the 2-core development machine. CPU time
says what wall time would be on an idle machine when other work shares the cores.
The last line is JSON: {"jobs", "seconds", "peak_mb"} of the full study.
Run with `make bench` or `python tests/benchmarks/dry_run.py --repeats 5`.
"""

from __future__ import annotations

import argparse
import json
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


def dry_run(configfile: Path) -> tuple[int, float, float, float]:
    """Jobs planned, wall seconds, CPU seconds and peak resident MB of one dry run."""
    with tempfile.TemporaryDirectory() as workdir, tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", workdir,
             "--configfile", str(configfile), "--dry-run", "--quiet", "rules"],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        output.seek(0)
        text = output.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"dry run of {configfile} failed:\n{text[-4000:]}")
    total = re.search(r"^total\s+(\d+)$", text, re.MULTILINE)
    return int(total.group(1)), seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = {}
    print(f"{'config':>10}  {'jobs':>5}  {'seconds (median)':>16}  {'CPU seconds':>11}  {'peak MB':>7}")
    for name, configfile in (("demo", REPO / "demo" / "config.yaml"), ("full study", REPO / "config.yaml")):
        runs = [dry_run(configfile) for _ in range(args.repeats)]
        results[name] = {
            "jobs": runs[0][0],
            "seconds": round(statistics.median(seconds for _, seconds, _, _ in runs), 2),
            "peak_mb": round(max(peak for _, _, _, peak in runs), 1),
        }
        cpu = statistics.median(cpu for _, _, cpu, _ in runs)
        print(
            f"{name:>10}  {results[name]['jobs']:5d}  {results[name]['seconds']:16.2f}  {cpu:11.2f}"
            f"  {results[name]['peak_mb']:7.1f}"
        )
    print(f"full study / demo dry-run time: {results['full study']['seconds'] / results['demo']['seconds']:.2f}x")
    print(json.dumps(results["full study"]))


if __name__ == "__main__":
    main()
