"""The code's citations of docs/protocol.md name sections that exist."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_every_cited_section_of_the_protocol_exists():
    known = anchors((REPO / "docs" / "protocol.md").read_text(encoding="utf-8"))
    cited = {
        (path.relative_to(REPO).as_posix(), anchor)
        for path in [*(REPO / "src").rglob("*.py"), *(REPO / "tests").glob("*.py")]
        for anchor in re.findall(r"docs/protocol\.md#([\w-]+)", path.read_text(encoding="utf-8"))
    }
    assert len(cited) >= 10
    assert [(path, anchor) for path, anchor in sorted(cited) if anchor not in known] == []
