"""Benchmark: how long and how much memory Snakemake takes to plan the full study, offline.

Runs `snakemake --dry-run --quiet rules` on config.yaml (the paper-scale study), on the
demo (Snakemake's fixed start-up cost plus ours) and on Snakemake's floor (a workflow
written here with as many jobs as the full study, each a one-line rule with one input,
a log and a benchmark: what Snakemake spends whatever the rules are), in empty working
directories, --repeats times each, interleaved so that a busy machine slows all three
alike. Prints the jobs planned, the median wall and CPU time and the peak resident memory
of each, and the full study's time relative to the floor's. Targets for the full study:
under 3 s and 500 MB on the 2-core development machine. CPU time says what wall time
would be on an idle machine when other work shares the cores.
The last line is JSON: {"jobs", "seconds", "peak_mb", "floor_seconds"} of the full study.
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


FLOOR_SNAKEFILE = """
rule all:
    input: expand("classified/{{i}}", i=range({pairs})), "prompts"
rule prompts:
    output: "prompts"
    log: "logs/prompts.log"
    shell: "touch {{output}}"
rule generate:
    input: "prompts"
    output: "generated/{{i}}"
    log: "logs/generate/{{i}}.log"
    benchmark: "benchmarks/generate/{{i}}.tsv"
    shell: "touch {{output}}"
rule classify:
    input: "generated/{{i}}"
    output: "classified/{{i}}"
    log: "logs/classify/{{i}}.log"
    benchmark: "benchmarks/classify/{{i}}.tsv"
    shell: "touch {{output}}"
"""


def dry_run(snakefile: Path, configfile: Path | None = None) -> tuple[int, float, float, float]:
    """Jobs planned, wall seconds, CPU seconds and peak resident MB of one dry run."""
    config = ["--configfile", str(configfile)] if configfile else []
    with tempfile.TemporaryDirectory() as workdir, tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(SNAKEMAKE), "--snakefile", str(snakefile), "--directory", workdir, *config,
             "--dry-run", "--quiet", "rules", "--cores", "1"],
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
    study = REPO / "Snakefile"
    jobs = dry_run(study, REPO / "config.yaml")[0]
    with tempfile.TemporaryDirectory() as folder:
        floor = Path(folder) / "Snakefile"
        floor.write_text(FLOOR_SNAKEFILE.format(pairs=(jobs - 2) // 2))
        plans = {
            "demo": (study, REPO / "demo" / "config.yaml"),
            "full study": (study, REPO / "config.yaml"),
            "floor": (floor, None),
        }
        runs = {name: [] for name in plans}
        for _ in range(args.repeats):
            for name, plan in plans.items():
                runs[name].append(dry_run(*plan))
    results = {}
    print(f"{'plan':>10}  {'jobs':>5}  {'seconds (median)':>16}  {'CPU seconds':>11}  {'peak MB':>7}")
    for name in plans:
        results[name] = {
            "jobs": runs[name][0][0],
            "seconds": round(statistics.median(seconds for _, seconds, _, _ in runs[name]), 2),
            "peak_mb": round(max(peak for _, _, _, peak in runs[name]), 1),
        }
        cpu = statistics.median(cpu for _, _, cpu, _ in runs[name])
        print(
            f"{name:>10}  {results[name]['jobs']:5d}  {results[name]['seconds']:16.2f}  {cpu:11.2f}"
            f"  {results[name]['peak_mb']:7.1f}"
        )
    print(f"full study / floor dry-run time: {results['full study']['seconds'] / results['floor']['seconds']:.2f}x")
    print(json.dumps({**results["full study"], "floor_seconds": results["floor"]["seconds"]}))


if __name__ == "__main__":
    main()
