"""Benchmark: the report at the study's scale, rendered and laid out in headless Chromium.

Synthetic studies in the exact table schemas (tests/report_fixtures.synthetic_study:
every category, three judge profiles, comparisons, alignment, model records with their
file lists, an 8-prompt same-seed grid per model) of 6 conditions (the baseline: the
demo's size), 24 (config.yaml as shipped: 6 models x 4 mitigations) and 60 (12 x 5).
For each: the time `render_report` takes (median of --repeats), the file's size, and,
opened at 1400 x 900 px with every block collapsed as shipped, the page height in
screens, where the overview table starts and ends, and the widest table against the
page's content column. Targets at 60 conditions: the overview within the first screen
(its bottom above 900 px), no table wider than the content column, at most 25 screens,
render under 2 s. Printed to A4 (Chromium's print to PDF), the page count and size.

    .venv/bin/python tests/benchmarks/report_scale.py [--repeats 3]

Needs chromium (`make chromium`). Last line: JSON with each size's figures and the
render time relative to the 6-condition study's.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from chromium import Browser, find_chromium  # noqa: E402
from report_fixtures import NO_PUBLISHED, synthetic_study  # noqa: E402

from i2peval.report import REPORT_TEMPLATE  # noqa: E402
from i2peval.report.report import render_report  # noqa: E402

SIZES = {6: (3, 2), 24: (6, 4), 60: (12, 5)}
WIDTH, HEIGHT = 1400, 900
LAYOUT = """(() => {
  const body = getComputedStyle(document.body);
  const column = document.body.clientWidth - parseFloat(body.paddingLeft) - parseFloat(body.paddingRight);
  const tables = Array.from(document.querySelectorAll("table")).filter((t) => t.offsetParent !== null);
  const widest = Math.max(...tables.map((t) => t.scrollWidth));
  const overview = document.querySelector("table.overview").getBoundingClientRect();
  return {height: document.documentElement.scrollHeight, column: column, widest: widest,
          wider: tables.filter((t) => t.scrollWidth > column + 1).length,
          overview_top: overview.top + window.scrollY, overview_bottom: overview.bottom + window.scrollY};
})()"""


def measure(conditions: int, repeats: int, chromium: str, folder: Path) -> dict:
    measured, grids, provenance, listed, baseline = synthetic_study(*SIZES[conditions])
    template_dir = Path(str(REPORT_TEMPLATE)).parent
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        html = render_report(measured, grids, provenance, template_dir, listed, baseline, NO_PUBLISHED)
        seconds.append(time.perf_counter() - start)
    page = folder / f"report-{conditions}.html"
    page.write_text(html, encoding="utf-8")
    with Browser(chromium) as browser:
        browser.viewport(WIDTH, HEIGHT)
        browser.open(page.as_uri())
        layout = browser.evaluate(LAYOUT)
        problems = browser.problems()
        pdf = base64.b64decode(browser.call("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69})["data"])
    return {
        "conditions": conditions,
        "render_s": round(statistics.median(seconds), 3),
        "mb": round(len(html.encode()) / 1e6, 2),
        "screens": round(layout["height"] / HEIGHT, 1),
        "overview_top_px": round(layout["overview_top"]),
        "overview_bottom_px": round(layout["overview_bottom"]),
        "widest_table_px": layout["widest"],
        "content_column_px": round(layout["column"]),
        "tables_wider_than_column": layout["wider"],
        "browser_problems": len(problems),
        "a4_pages": len(re.findall(rb"/Type\s*/Page\b", pdf)),
        "pdf_mb": round(len(pdf) / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        sys.exit("chromium is not installed: run `make chromium` (needs root and apt-get)")
    with tempfile.TemporaryDirectory() as folder:
        results = [measure(size, args.repeats, chromium, Path(folder)) for size in SIZES]
    baseline = results[0]["render_s"]
    columns = list(results[0])
    print(" | ".join(columns))
    for result in results:
        result["render_vs_6"] = round(result["render_s"] / baseline, 2)
        print(" | ".join(str(result[column]) for column in columns))
    largest = results[-1]
    targets = {
        "overview_in_first_screen": largest["overview_bottom_px"] < HEIGHT,
        "no_table_wider_than_column": largest["tables_wider_than_column"] == 0,
        "at_most_25_screens": largest["screens"] <= 25,
        "render_under_2_s": largest["render_s"] < 2,
    }
    verdicts = ", ".join(f"{name} {'met' if met else 'MISSED'}" for name, met in targets.items())
    print(f"targets at 60 conditions: {verdicts}")
    print(json.dumps({"sizes": results, "targets": targets}))


if __name__ == "__main__":
    main()
