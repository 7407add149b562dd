"""The report in a real browser: headless Chromium opens it, it renders without console
errors or network requests, the images are blurred until a click reveals them, the
overview is on the first screen, tables sort and filter and download as CSV, and a
screenshot is saved. `make test` installs Debian's chromium when it can; without it
these tests skip and say why."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from chromium import Browser, find_chromium
from report_fixtures import CONDITIONS, NO_PUBLISHED, provenance, synthetic_study, write_inputs

from i2peval.report import REPORT_TEMPLATE, tables
from i2peval.report.overview import overview
from i2peval.report.report import render_report, write_report

TEMPLATE_DIR = Path(str(REPORT_TEMPLATE)).parent
BLUR = "getComputedStyle(document.querySelectorAll('figure.cell img')[{index}]).filter"
CELLS = "document.querySelectorAll('figure.cell').length"


@pytest.fixture(scope="module")
def chromium() -> str:
    executable = find_chromium()
    if executable is None:
        reason = "chromium is not installed, and `make test` could not install it here (needs root and apt-get)"
        print(reason)
        pytest.skip(reason)
    return executable


def check_report_in_browser(chromium: str, page: Path, screenshot: Path) -> dict[str, float]:
    """Open `page`, check rendering, blur and reveal; return the seconds each step took."""
    timings = {}
    start = time.monotonic()
    with Browser(chromium) as browser:
        timings["start"] = time.monotonic() - start
        browser.open(page.as_uri())
        timings["load"] = time.monotonic() - start - timings["start"]
        assert browser.evaluate("document.title") == "I2P inappropriateness report"
        assert browser.evaluate("document.querySelectorAll('section svg').length") >= 2
        cells = browser.evaluate(CELLS)
        assert cells >= 2
        assert all("blur(" in browser.evaluate(BLUR.format(index=i)) for i in range(cells))
        assert browser.evaluate("document.querySelectorAll('figure.cell img')[0].naturalWidth") > 0

        browser.click("figure.cell button.reveal")
        assert browser.evaluate(BLUR.format(index=0)) == "none"
        assert "blur(" in browser.evaluate(BLUR.format(index=1))

        browser.click("button[data-reveal='all']")
        assert [browser.evaluate(BLUR.format(index=i)) for i in range(cells)] == ["none"] * cells
        browser.click("button[data-reveal='all']")
        assert all("blur(" in browser.evaluate(BLUR.format(index=i)) for i in range(cells))

        browser.screenshot(screenshot)
        assert browser.problems() == []
    timings["total"] = time.monotonic() - start
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    print(f"{page.name} in Chromium: " + ", ".join(f"{step} {seconds:.2f} s" for step, seconds in timings.items()))
    return timings


def test_report_from_synthetic_tables_renders_and_reveals(chromium, tmp_path):
    inputs, image_path = write_inputs(tmp_path / "tables")
    page = tmp_path / "report.html"
    write_report(
        inputs, image_path, provenance(demo=True), TEMPLATE_DIR, page, CONDITIONS, "none", NO_PUBLISHED, grid_prompts=4
    )
    check_report_in_browser(chromium, page, tmp_path / "report.png")


VISIBLE_ROWS = (
    "Array.from(document.querySelectorAll('table[data-table=\"{table}\"] tbody tr'))"
    ".filter((row) => !row.hidden && row.offsetParent !== null)"
    ".map((row) => row.children[{column}].textContent.trim())"
)


def choose(browser: Browser, filter_name: str, value: str) -> None:
    browser.evaluate(
        f"(() => {{ const s = document.querySelector('select[data-filter=\"{filter_name}\"]'); s.value = '{value}';"
        " s.dispatchEvent(new Event('change', {bubbles: true})); })()"
    )


def test_report_of_24_conditions_shows_the_overview_first_and_sorts_filters_and_downloads(chromium, tmp_path):
    measured, grids, record, listed, baseline = synthetic_study(6, 4, grid_prompts=2)
    page = tmp_path / "report.html"
    page.write_text(render_report(measured, grids, record, TEMPLATE_DIR, listed, baseline, NO_PUBLISHED))
    primary = tables.select(measured.metrics, "paper")
    with Browser(chromium) as browser:
        browser.viewport(1400, 900)
        browser.open(page.as_uri())
        assert browser.evaluate("document.querySelector('table.overview').getBoundingClientRect().bottom") < 900
        assert browser.evaluate("document.querySelectorAll('table.overview tbody tr').length") == 6

        per_category = VISIBLE_ROWS.format(table="per-category", column=2)
        shown = browser.evaluate(per_category)
        assert len(shown) == 24 and shown[0].startswith(tables.category_table(primary, listed).rows[0][2].text)
        browser.click("table[data-table='per-category'] thead th:nth-child(3) button.sort")
        ascending = sorted(primary.filter(category="all")["inappropriate_probability"].to_list())
        assert [float(cell.split("[")[0]) for cell in browser.evaluate(per_category)] == [
            pytest.approx(value * 100, abs=0.006) for value in ascending
        ]
        browser.click("table[data-table='per-category'] thead th:nth-child(3) button.sort")
        assert [float(cell.split("[")[0]) for cell in browser.evaluate(per_category)] == [
            pytest.approx(value * 100, abs=0.006) for value in reversed(ascending)
        ]

        choose(browser, "model", "model-02")
        models = VISIBLE_ROWS.format(table="per-category", column=0)
        assert browser.evaluate(models) == ["model-02"] * 4
        assert browser.evaluate("document.querySelectorAll('table.overview tbody tr:not([hidden])').length") == 1
        choose(browser, "mitigation", "mitigation-1")
        assert browser.evaluate(VISIBLE_ROWS.format(table="per-category", column=1)) == ["mitigation-1"]
        choose(browser, "profile", "q16-0.9")
        assert browser.evaluate(VISIBLE_ROWS.format(table="judge-profiles", column=1)) == ["model-02 / mitigation-1"]
        choose(browser, "model", "")
        assert sorted(browser.evaluate(models)) == [f"model-{index:02d}" for index in range(6)]  # sorted by IP

        browser.download_to(tmp_path / "downloads")
        browser.click("a.csv")
        download = browser.wait_for("Browser.downloadProgress", of_page=False, state="completed")
        assert browser.problems() == []
    saved = tmp_path / "downloads" / "overview.csv"
    assert download["params"]["filePath"] == str(saved)
    assert saved.read_text(encoding="utf-8") == overview(
        measured.metrics, measured.comparisons, "paper", baseline, listed
    ).table.csv()


def test_broken_page_is_caught(chromium, tmp_path):
    """The checks can fail: a page with a script error and an outside request is reported."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><title>x</title><img src="http://192.0.2.1/x.png"><script>undefined_name();</script>'
    )
    with Browser(chromium) as browser:
        browser.open(page.as_uri())
        problems = browser.problems()
    assert any("undefined_name" in problem for problem in problems)
    assert any(problem == "network request: http://192.0.2.1/x.png" for problem in problems)


@pytest.mark.workflow
def test_demo_report_renders_and_reveals(chromium, demo_run, tmp_path):
    check_report_in_browser(chromium, demo_run / "results" / "report.html", tmp_path / "demo-report.png")


def test_the_content_security_policy_stops_a_script_that_escaped_escaping(chromium, tmp_path):
    """Defence in depth: a script injected into the page does not run, and the browser says why."""
    inputs, image_path = write_inputs(tmp_path / "tables")
    page = tmp_path / "report.html"
    write_report(
        inputs, image_path, provenance(demo=True), TEMPLATE_DIR, page, CONDITIONS, "none", NO_PUBLISHED, grid_prompts=1
    )
    tampered = tmp_path / "tampered.html"
    tampered.write_text(page.read_text().replace("</h1>", "</h1><script>document.title = 'injected';</script>", 1))
    with Browser(chromium) as browser:
        browser.open(tampered.as_uri())
        assert browser.evaluate("document.title") == "I2P inappropriateness report"
        problems = browser.problems()
    assert any("Content Security Policy" in problem for problem in problems)
