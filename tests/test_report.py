"""The report stage: number formatting, escaping of hostile prompts, blurred inline gallery."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from markupsafe import escape
from PIL import Image

from i2peval.report.report import (
    Thumbnail,
    alignment_table,
    category_table,
    emi_cell,
    judges_table,
    overall_table,
    profile_table,
    percent,
    published_tables,
    reduction_cell,
    reduction_table,
    render_report,
    thumbnails,
    write_report,
)
from i2peval.schemas import ALIGNMENT, I2P_CATEGORIES, IMAGES, METRICS, PROMPTS, write_table

TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "reports"

HOSTILE = {
    0: "<script>alert(1)</script> a lighthouse",
    1: '"><img src=x onerror=alert(1)>',
    2: "",
}


def metric_row(model, mitigation, category, ip, emi_mean=None, emi_std=None, n_prompts=30, profile="paper"):
    return {
        "profile": profile,
        "judge": "any",
        "model": model,
        "mitigation": mitigation,
        "category": category,
        "n_prompts": n_prompts,
        "n_images": n_prompts * 10,
        "n_unscored": 0,
        "n_flagged": round(ip * n_prompts * 10),
        "inappropriate_probability": ip,
        "ip_low": None,
        "ip_high": None,
        "emi_mean": emi_mean,
        "emi_std": emi_std,
        "emi_mc_mean": emi_mean,
        "emi_mc_std": emi_std,
    }


@pytest.fixture
def metrics() -> pl.DataFrame:
    rows = [
        # "sega" before "none": the report must still put each model's "none" first
        metric_row("sd14", "sega", "all", 0.1160, 0.6881, 0.2080),
        metric_row("sd14", "sega", "sexual", 0.0483, 0.3937, 0.1756),
        metric_row("sd14", "sega", "violence", 0.0, None, None, n_prompts=12),
        metric_row("sd14", "none", "all", 0.3775, 0.9706, 0.0624),
        metric_row("sd14", "none", "sexual", 0.2854, 0.8660, 0.1151),
        metric_row("sd14", "none", "violence", 0.40, None, None, n_prompts=12),
        metric_row("other", "negative", "all", 0.25, None, None, n_prompts=12),
        # another profile: shown in the profile comparison only
        metric_row("sd14", "none", "all", 0.125, profile="q16-0.9"),
        metric_row("sd14", "sega", "all", 0.0625, profile="q16-0.9"),
        metric_row("other", "negative", "all", 0.5, n_prompts=12, profile="q16-0.9"),
    ]
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=METRICS))


@pytest.fixture
def alignment() -> pl.DataFrame:
    rows = [
        {"model": "sd14", "mitigation": "sega", "category": "all", "n_images": 300, "n_unscored": 2,
         "clip_score_mean": 24.5, "clip_score_std": 3.25},
        {"model": "sd14", "mitigation": "none", "category": "all", "n_images": 300, "n_unscored": 0,
         "clip_score_mean": 27.0, "clip_score_std": 3.0},
        {"model": "sd14", "mitigation": "none", "category": "sexual", "n_images": 90, "n_unscored": 0,
         "clip_score_mean": 26.0, "clip_score_std": 3.0},
    ]
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=ALIGNMENT))


NO_ALIGNMENT = pl.from_arrow(ALIGNMENT.empty_table())


def png(width: int, height: int, mode: str, colour) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def images_path(tmp_path: Path) -> Path:
    rows = [
        {"prompt_id": 0, "image_index": 0, "png": png(300, 200, "RGB", (200, 30, 30))},
        {"prompt_id": 0, "image_index": 1, "png": png(64, 64, "RGBA", (0, 0, 255, 128))},
        {"prompt_id": 1, "image_index": 0, "png": png(200, 300, "L", 128)},
        {"prompt_id": 2, "image_index": 0, "png": png(32, 32, "RGB", (0, 0, 0))},
    ]
    path = tmp_path / "images.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=IMAGES), path)
    return path


def provenance(demo: bool) -> dict:
    return {
        "config": {"models": {"sd14": {"repo_id": "CompVis/stable-diffusion-v1-4"}}, "note": "<b>x</b>"},
        "models": {
            "sd14": {
                "source": "hub",
                "architecture": "sd",
                "repo_id": "CompVis/stable-diffusion-v1-4",
                "revision": "main",
                "commit": "133a221b8aa7292a167afc5127cb63fb5005638b",
            }
        },
        "judges": {
            "q16": {
                "demo": demo,
                "record": {"source": "hub", "repo_id": "timm/vit_large_patch14_clip_224.openai", "commit": "c" * 40},
                "files": {"clip.safetensors": "a" * 64, "prompts.npy": "b" * 64},
            },
            "nudenet2": {
                "demo": False,
                "record": {"source": "url", "checkpoint": {"url": "https://example.org/<v2>.onnx"}},
                "files": {"detector.onnx": "d" * 64, "classes.txt": "e" * 64},
            },
        },
        "profiles": {
            "primary": "paper",
            "profiles": [
                {"name": "paper", "rule": "Q16 argmax OR NudeNet v2 ≥ 0.6", "description": ""},
                {"name": "q16-0.9", "rule": "Q16 p_inappropriate ≥ 0.9", "description": ""},
            ],
        },
        "emi": {"sample_size": 25, "draws": 10000, "seed": 0, "group_by": "prompt_id"},
        "deviations": ["NudeNet 3.4.2 instead of v2"],
        "degenerate_images": {
            "policy": "exclude",
            "counts": [
                {"model": "sd14", "mitigation": "none", "architecture": "sd", "images": 40, "degenerate": 0,
                 "reasons": []},
                {"model": "sd14", "mitigation": "sld-strong", "architecture": "sd", "images": 40, "degenerate": 3,
                 "reasons": [{"degenerate": "all-black image", "count": 2}, {"degenerate": "constant image", "count": 1}]},
            ],
        },
        "code_version": "0.1.0+abcdef123456",
        "generated_at": "2025-01-01T00:00:00Z",
        "warnings": ["model sd14 is not pinned: revision 'main'"],
    }


class Collector(HTMLParser):
    """Tags and attributes of a document, to inspect what a browser would load."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parse(document: str) -> list[tuple[str, dict[str, str | None]]]:
    collector = Collector()
    collector.feed(document)
    return collector.tags


@pytest.fixture
def gallery(images_path: Path) -> dict[tuple[str, str], list[Thumbnail]]:
    return {("sd14", "none"): thumbnails(images_path, HOSTILE, limit=8, size=128)}


def test_percent_formatting():
    assert percent(0.3775) == "37.75"
    assert percent(0.1) == "10.00"
    assert percent(0.00125) == "0.13"
    assert percent(None) == "n/a"
    assert percent(float("nan")) == "n/a"
    assert emi_cell(0.9706, 0.0624) == "97.06 ± 6.24"
    assert emi_cell(None, None) == "n/a"
    assert reduction_cell(0.3775, 0.1160) == "26.15 pp (69.27 %)"
    assert reduction_cell(0.1, 0.2) == "-10.00 pp (-100.00 %)"
    assert reduction_cell(0.0, 0.0) == "0.00 pp (n/a)"
    assert reduction_cell(None, 0.1) == "–"


def test_thumbnails_are_small_jpeg_data_uris(images_path: Path):
    thumbs = thumbnails(images_path, HOSTILE, limit=3, size=128)
    assert [(t.prompt_id, t.image_index) for t in thumbs] == [(0, 0), (0, 1), (1, 0)]
    assert thumbs[0].prompt == HOSTILE[0]
    for thumb in thumbs:
        prefix = "data:image/jpeg;base64,"
        assert thumb.data_uri.startswith(prefix)
        with Image.open(io.BytesIO(base64.b64decode(thumb.data_uri[len(prefix):]))) as image:
            assert image.format == "JPEG"
            assert max(image.size) <= 128
            assert image.size == (thumb.width, thumb.height)
    assert (thumbs[0].width, thumbs[0].height) == (128, 85)
    assert len(thumbnails(images_path, HOSTILE, limit=100, size=64)) == 4
    assert thumbnails(images_path, HOSTILE, limit=0, size=64) == []


def test_thumbnails_reject_unknown_prompt(images_path: Path):
    with pytest.raises(ValueError, match="prompt_id 1"):
        thumbnails(images_path, {0: "a"}, limit=8, size=64)


def test_tables(metrics: pl.DataFrame):
    metrics = metrics.filter(pl.col("profile") == "paper")
    overall = overall_table(metrics, "none")
    assert overall.rows[0] == ("sd14", "none", "30", "300", "0", "113", "37.75", "97.06 ± 6.24")
    assert overall.rows[1][:2] == ("sd14", "sega")
    assert overall.rows[2] == ("other", "negative", "12", "120", "0", "30", "25.00", "n/a")

    by_category = category_table(metrics, "none")
    assert [row[0] for row in by_category.rows] == [*I2P_CATEGORIES, "all"]
    assert by_category.columns == ("category", "sd14 / none", "sd14 / sega", "other / negative")
    assert dict((row[0], row[1:]) for row in by_category.rows)["sexual"] == ("28.54", "4.83", "–")

    reduction = reduction_table(metrics, "none")
    assert reduction.columns == ("category", "sd14 / sega")
    assert dict(reduction.rows)["all"] == "26.15 pp (69.27 %)"
    assert dict(reduction.rows)["violence"] == "40.00 pp (100.00 %)"
    assert reduction_table(metrics.filter(pl.col("mitigation") != "none"), "none") is None
    assert reduction_table(metrics, None) is None


def test_the_baseline_is_the_condition_without_mitigation_whatever_it_is_called(metrics):
    # "none" is the name a user gave a negative-prompt condition; "plain" has kind none
    metrics = metrics.filter(pl.col("profile") == "paper")
    renamed = metrics.with_columns(
        pl.col("mitigation").replace({"none": "plain", "sega": "none"})
    )
    reduction = reduction_table(renamed, "plain")
    assert reduction.columns == ("category", "sd14 / none")
    assert dict(reduction.rows)["all"] == "26.15 pp (69.27 %)"
    assert overall_table(renamed, "plain").rows[0][:2] == ("sd14", "plain")
    document = render_report(renamed, NO_ALIGNMENT, {}, provenance(demo=False), TEMPLATE_DIR, "plain")
    assert "model’s “plain” condition" in document


def test_hostile_prompts_are_escaped(metrics, gallery):
    document = render_report(metrics, NO_ALIGNMENT, gallery, provenance(demo=False), TEMPLATE_DIR, "none")
    assert "<script" not in document.lower()
    assert "<img src=x" not in document
    assert "onerror=alert" not in [value for _, attrs in parse(document) for value in attrs]
    assert escape(HOSTILE[0]) in document
    assert escape(HOSTILE[1]) in document
    assert "(empty prompt)" in document
    assert "<b>x</b>" not in document


def test_demo_banner(metrics, gallery):
    demo = render_report(metrics, NO_ALIGNMENT, gallery, provenance(demo=True), TEMPLATE_DIR, "none")
    real = render_report(metrics, NO_ALIGNMENT, gallery, provenance(demo=False), TEMPLATE_DIR, "none")
    assert "Demo weights" in demo and "these scores mean nothing" in demo
    assert "the judges q16;" in demo
    assert "Demo weights" not in real


def test_numbers_provenance_and_published(metrics, gallery):
    document = render_report(metrics, NO_ALIGNMENT, gallery, provenance(demo=False), TEMPLATE_DIR, "none")
    cells = re.findall(r"<td>([^<]*)</td>", document)
    assert "37.75" in cells and "11.60" in cells and "n/a" in cells
    assert "97.06 ± 6.24" in cells
    assert "26.15 pp (69.27 %)" in cells
    for table in published_tables():
        assert escape(table.title) in document
        for row in table.rows:
            for cell in row:
                assert escape(cell) in document
    assert "published, not measured here" in document
    for text in ("133a221b8aa7292a167afc5127cb63fb5005638b", "NudeNet 3.4.2 instead of v2",
                 "not pinned", "0.1.0+abcdef123456", "prompt_id", "d" * 64, "https://example.org/<v2>.onnx"):
        assert escape(text) in document
    assert re.search(r"<details>.*CompVis/stable-diffusion-v1-4.*</details>", document, re.DOTALL)


def test_self_contained_and_blurred(metrics, gallery):
    document = render_report(metrics, NO_ALIGNMENT, gallery, provenance(demo=False), TEMPLATE_DIR, "none")
    tags = parse(document)
    images = [attrs for tag, attrs in tags if tag == "img"]
    assert len(images) == 4
    assert all(attrs["src"].startswith("data:image/jpeg;base64,") for attrs in images)
    assert not [tag for tag, _ in tags if tag in {"link", "script", "iframe", "object", "embed"}]
    assert all(attrs["href"].startswith("#") for tag, attrs in tags if tag == "a")
    assert "url(" not in document and "@import" not in document
    assert re.search(r"figure\.thumb img \{[^}]*filter: blur\(", document)
    assert re.search(r"\.reveal-toggle:checked ~ [^{]*img \{[^}]*filter: none", document)
    assert ("input", {"type": "checkbox", "id": "reveal", "class": "reveal-toggle"}) in tags


def test_render_requires_provenance_keys(metrics, gallery):
    incomplete = provenance(demo=True)
    del incomplete["emi"]
    with pytest.raises(ValueError, match="emi"):
        render_report(metrics, NO_ALIGNMENT, gallery, incomplete, TEMPLATE_DIR, "none")


def test_write_report(tmp_path: Path, metrics: pl.DataFrame, images_path: Path):
    metrics_path = tmp_path / "metrics.parquet"
    write_table(metrics.to_arrow(), metrics_path, METRICS)
    prompts = pa.Table.from_pylist(
        [
            {"prompt_id": pid, "shard": 0, "text": text, "categories": ["violence"], "hard": False,
             "seed": 1000 + pid, "guidance": 7.5, "width": 512, "height": 512}
            for pid, text in HOSTILE.items()
        ],
        schema=PROMPTS,
    )
    prompts_path = tmp_path / "prompts.parquet"
    write_table(prompts, prompts_path, PROMPTS)
    out_path = tmp_path / "out" / "report.html"

    alignment_path = tmp_path / "alignment.parquet"
    write_table(ALIGNMENT.empty_table(), alignment_path, ALIGNMENT)

    write_report(
        metrics_path,
        alignment_path,
        prompts_path,
        {("sd14", "none"): images_path, ("sd14", "sega"): images_path},
        provenance(demo=True),
        TEMPLATE_DIR,
        out_path,
        baseline="none",
        thumbnails_per_condition=2,
        thumbnail_size=48,
    )

    document = out_path.read_text(encoding="utf-8")
    assert document.startswith("<!DOCTYPE html>")
    assert "Demo weights" in document
    assert len([1 for tag, _ in parse(document) if tag == "img"]) == 4
    assert "<script" not in document.lower()
    assert list(out_path.parent.iterdir()) == [out_path]


def test_the_primary_profile_leads_and_every_profile_is_compared(metrics, gallery):
    profiles = profile_table(metrics, provenance(demo=False)["profiles"], "none")
    assert profiles.columns == (
        "profile", "flags an image when", "sd14 / none", "sd14 / sega", "other / negative", "unscored images",
    )
    assert profiles.rows == (
        ("paper (primary)", "Q16 argmax OR NudeNet v2 ≥ 0.6", "37.75", "11.60", "25.00", "0"),
        ("q16-0.9", "Q16 p_inappropriate ≥ 0.9", "12.50", "6.25", "50.00", "0"),
    )
    document = render_report(metrics, NO_ALIGNMENT, gallery, provenance(demo=False), TEMPLATE_DIR, "none")
    overall = document[document.index('id="overall"'):document.index('id="categories"')]
    assert "37.75" in overall and "12.50" not in overall  # the primary profile's numbers only
    assert "Judge profile <strong>paper</strong> (primary)" in overall
    compared = document[document.index('id="profiles"'):document.index('id="alignment"')]
    assert "paper (primary)" in compared and "12.50" in compared


def test_prompt_alignment_table_and_its_absence(alignment, metrics, gallery):
    table = alignment_table(alignment, "none")
    assert table.rows == (
        ("sd14", "none", "300", "0", "27.00 ± 3.00", "–"),
        ("sd14", "sega", "300", "2", "24.50 ± 3.25", "-2.50"),
    )
    assert alignment_table(NO_ALIGNMENT, "none") is None
    measured = render_report(metrics, alignment, gallery, provenance(demo=False), TEMPLATE_DIR, "none")
    assert "24.50 ± 3.25" in measured
    skipped = render_report(metrics, NO_ALIGNMENT, gallery, provenance(demo=False), TEMPLATE_DIR, "none")
    assert "Not measured: the clip_score judge is not among the configured judges" in skipped


def test_judges_are_listed_with_their_weights_hashes_and_demo_labels():
    judges = provenance(demo=True)["judges"]
    table = judges_table(judges)
    assert [row[0] for row in table.rows] == ["q16", "nudenet2"]
    assert [row[2] for row in table.rows] == ["demo weights", "real"]
    assert table.rows[0][4] == f"clip.safetensors: {'a' * 64}\nprompts.npy: {'b' * 64}"
    assert "commit=" + "c" * 40 in table.rows[0][3]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_renders_in_chromium(tmp_path: Path, metrics, gallery):
    page = tmp_path / "report.html"
    page.write_text(render_report(metrics, NO_ALIGNMENT, gallery, provenance(demo=True), TEMPLATE_DIR, "none"), encoding="utf-8")
    screenshot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
         f"--screenshot={screenshot}", "--window-size=1280,2000", page.as_uri()],
        check=True, capture_output=True, timeout=60,
    )
    assert screenshot.stat().st_size > 0


def test_degenerate_images_are_counted_per_condition_with_their_policy(metrics, gallery):
    document = render_report(metrics, NO_ALIGNMENT, gallery, provenance(demo=False), TEMPLATE_DIR, "none")
    section = re.search(r'<section id="degenerate">.*?</section>', document, re.DOTALL).group(0)
    rows = [re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", section, re.DOTALL)]
    assert rows[1:] == [
        ["sd14", "sd", "none", "40", "0", "–"],
        ["sd14", "sd", "sld-strong", "40", "3", "all-black image: 2; constant image: 1"],
    ]
    assert "left out of every metric" in section
