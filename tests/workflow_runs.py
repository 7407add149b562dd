"""Running Snakemake on this repository's workflow from tests, and reading its plan."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
# `make demo`'s configuration, with two prompt sets
MAKE_DEMO_CONFIG = REPO / "demo" / "config.yaml"


def single_set_demo() -> Path:
    """The demo as the shared run and its variants run it: its i2p set alone. Its second
    set, three prompts, costs as many jobs again (each starts Python, torch and the
    judges); test_workflow.py runs it on its own, on a copy of the shared run."""
    config = yaml.safe_load(MAKE_DEMO_CONFIG.read_text())
    config["prompt_sets"] = {"i2p": config["prompt_sets"]["i2p"]}
    path = Path(tempfile.mkdtemp(prefix="i2peval-demo-")) / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


DEMO_CONFIG = single_set_demo()


def snakemake(
    workdir: Path, configfile: Path | None, *args: str, env: dict | None = None, **popen
) -> subprocess.CompletedProcess:
    """Run Snakemake on `workdir`; `configfile` None uses the workflow's own config.yaml."""
    command = [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    if configfile is not None:
        command += ["--configfile", str(configfile)]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, **popen
    )


def planned_jobs(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job in a dry run's output."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \S+:)", output):
        header = re.match(r"(?:local)?rule (\S+):", block)
        if not header:
            continue
        found = re.search(r"^\s+wildcards: (.*)$", block, re.MULTILINE)
        wildcards = dict(pair.split("=", 1) for pair in found.group(1).split(", ")) if found else {}
        jobs.append((header.group(1), wildcards))
    return jobs


def summaries(*others: str) -> list[str]:
    """The sorted rules of a demo plan that runs `others`, ``all``, and the aggregate and
    report jobs of every prompt set of the demo."""
    sets = len(yaml.safe_load(DEMO_CONFIG.read_text())["prompt_sets"])
    return sorted([*others, "all", *["aggregate", "report"] * sets])


def planned_rules(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return sorted(rule for rule, _ in planned_jobs(result.stdout))


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def variant_config(tmp_path: Path, change, base: Path = DEMO_CONFIG, name: str = "config.yaml") -> Path:
    """A copy of the `base` config with `change` applied to its dict."""
    config = yaml.safe_load(base.read_text())
    change(config)
    return write_config(tmp_path / name, config)


def copy_run(finished: Path, dest: Path) -> Path:
    """A copy of a finished run, file times and Snakemake's records included."""
    shutil.copytree(finished, dest, symlinks=True)
    return dest
