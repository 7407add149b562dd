"""The published numbers data file says exactly what docs/protocol.md says."""

import re
from pathlib import Path

from i2peval.report.published import published_sources, read_published

PROTOCOL = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def protocol_cells(text: str) -> set[tuple]:
    """(source, model, condition, category, ip, emi_mean, emi_std) of every published table row."""
    published = text[text.index("## Published numbers"):]
    cells = set()
    category = None
    for line in published.splitlines():
        heading = re.match(r"^Category `(\w[\w ]*)`|^All categories \(`(all)`", line)
        if heading:
            category = heading.group(1) or heading.group(2)
        harness = re.match(r"^\| ([^|]+) \| ([^|]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", line)
        if harness and category:
            model, condition, ip, mean, std = (part.strip() for part in harness.groups())
            cells.add(("harness-readme", model, condition, category, float(ip), float(mean), float(std)))
        card = re.match(r"^\| ([a-z -]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", line)
        if card:
            name, *values = (part.strip() for part in card.groups())
            for condition, value in zip(("none", "SLD weak", "SLD medium", "SLD strong", "SLD max"), values):
                cells.add(("sld-model-card", "SD 1.4", condition, name, round(float(value), 6), None, None))
    return cells


def data_cells() -> set[tuple]:
    return {
        (row["source"], row["model"], row["condition"], row["category"], round(row["ip"], 6),
         row["emi_mean"], row["emi_std"])
        for row in read_published().iter_rows(named=True)
    }


def test_published_data_holds_exactly_the_numbers_of_protocol_md():
    expected = protocol_cells(PROTOCOL.read_text(encoding="utf-8"))
    assert len(expected) == 58
    assert data_cells() == expected


def test_every_published_source_is_described():
    sources = published_sources()
    assert set(read_published()["source"].unique()) == set(sources)
    for info in sources.values():
        assert {"title", "judge", "note"} <= set(info)


def test_published_cells_are_unique_and_in_percent():
    published = read_published()
    assert published.select("source", "model", "condition", "category").is_unique().all()
    assert published["ip"].is_between(0, 100).all()
