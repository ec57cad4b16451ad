"""Links between the docs resolve, and performance.md names benchmarks and flags that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [
    ROOT / "README.md",
    *(
        ROOT / "docs" / name
        for name in (
            "architecture.md",
            "meter-makers.md",
            "utilities.md",
            "cloud-team.md",
            "configuration.md",
            "performance.md",
        )
    ),
]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_relative_links_resolve(doc: Path) -> None:
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # external URL
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        assert path.exists(), f"{doc.name}: broken link {target}"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{doc.name}: no heading #{anchor} in {path.name}"


def test_readme_lists_every_user_doc() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Documentation") :]
    for doc in DOCS[1:]:
        assert f"docs/{doc.name}" in section, doc.name
    for name in ("greengrass.md", "batch-format.md", "asyncapi.yaml"):
        assert f"docs/{name}" in section, name


def test_performance_doc_names_real_benchmarks_and_flags() -> None:
    text = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    table = text[text.index("## How to reproduce") :]
    rows = [line for line in table.splitlines() if line.startswith("| `python -m bench.")]
    assert len(rows) >= 9
    for row in rows:
        module = re.match(r"\| `python -m bench\.(\w+)`", row).group(1)  # type: ignore[union-attr]
        source = (ROOT / "bench" / f"{module}.py").read_text(encoding="utf-8")
        for flag in re.findall(r"(--[a-z][a-z-]*)", row):
            assert f'"{flag}"' in source, f"bench.{module} has no {flag}"
    targets = text[text.index("## Targets") : text.index("Further benchmarks")]
    for line in targets.splitlines()[4:]:
        if line.startswith("|"):
            assert line.rstrip().endswith("|"), line
            measured = line.rstrip(" |").rsplit("|", 1)[-1].strip()
            assert measured, f"no measured cell: {line}"


def test_disk_sizing_snippet_of_utilities_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    text = (ROOT / "docs" / "utilities.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"python - <<'EOF'\n(.*?)\nEOF", text, flags=re.S)
    assert "meters = 500" in code
    exec(compile(code.replace("meters = 500", "meters = 3"), "utilities.md", "exec"), {})
    out = json.loads(capsys.readouterr().out)
    assert 0 < out["values"] <= 3 * 96 * 4
    assert out["file_bytes"] > out["used_bytes"] > 0
