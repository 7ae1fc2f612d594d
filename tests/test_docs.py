"""The docs live in the repo: every `docs/<file>.md §N` or `... <label>` reference in the code, configs, tests and
README resolves to an existing file, a `## N.` section of it and a `**<label>**` item of it; no reference points
outside the repo."""

from __future__ import annotations

import re
import subprocess
from itertools import product
from pathlib import Path

import pytest
from conftest import REPO

DOC = re.compile(r"docs/[\w/.{},*-]*?\.md")
# what may follow a doc reference: sections (§3, §1-5, §2–§5) and labels (B8, N6a, Q10), joined by , / and
TAIL = re.compile(r"(?:(?:\s*(?:,|/|\band\b)\s*|\s+)(?:§\d+(?:\s*[–-]\s*§?\d+)?|[BDNQR]\d{1,2}[ab]?\b))*")
SECTION = re.compile(r"§(\d+)(?:\s*[–-]\s*§?(\d+))?")
LABEL = re.compile(r"\b([BDNQR]\d{1,2}[ab]?)\b")
OUTSIDE = "../" + "shared/docs"


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    suffixes = (".py", ".yaml", ".md", ".sh", ".toml", ".ipynb", ".cfg", ".txt")
    skipped = ("benchmarks/results/", "tests/test_docs.py")  # generated results; this file's own examples
    return [REPO / f for f in listed.split() if f.endswith(suffixes) and not f.startswith(skipped)
            and (REPO / f).is_file()]


def expand(pattern: str) -> list[str]:
    """``docs/methods/{a,b}.md`` -> both files; ``docs/methods/*.md`` -> every file it matches."""
    braces = re.findall(r"\{([^}]*)\}", pattern)
    template = re.sub(r"\{[^}]*\}", "{}", pattern)
    names = [template.format(*choice) for choice in product(*(b.split(",") for b in braces))]
    return [str(p.relative_to(REPO)) for name in names for p in sorted(REPO.glob(name))] if "*" in pattern \
        else names


def references() -> list[tuple[str, str, list[int], list[str]]]:
    """(where, doc file, sections, labels) of every doc reference in the repo."""
    found = []
    for path in tracked_text_files():
        text = path.read_text(errors="replace")
        for line_no, line in enumerate(text.splitlines(), 1):
            for match in DOC.finditer(line):
                tail = TAIL.match(line, match.end()).group(0)
                sections = [n for a, b in SECTION.findall(tail) for n in range(int(a), int(b or a) + 1)]
                labels = LABEL.findall(tail)
                for doc in expand(match.group(0)):
                    found.append((f"{path.relative_to(REPO)}:{line_no}", doc, sections, labels))
    return found


def problems(where: str, doc: str, sections: list[int], labels: list[str]) -> list[str]:
    path = REPO / doc
    if not path.is_file():
        return [f"{where}: {doc} does not exist"]
    text = path.read_text()
    missing = [f"§{n}" for n in sections if not re.search(rf"^## {n}\.", text, re.M)]
    missing += [label for label in labels if f"**{label}**" not in text]
    return [f"{where}: {doc} has no {', '.join(missing)}"] if missing else []


def test_the_code_points_into_the_repos_docs():
    found = references()
    assert len(found) > 100, "the parser found too few references: is DOC still the way the code cites docs?"
    broken = [p for ref in found for p in problems(*ref)]
    assert not broken, "\n".join(broken)


def test_no_reference_points_outside_the_repo():
    outside = [f"{p.relative_to(REPO)}" for p in tracked_text_files() if OUTSIDE in p.read_text(errors="replace")]
    assert not outside, f"these files cite docs a clone does not have: {outside}"


@pytest.mark.parametrize("doc", sorted(p.name for p in (REPO / "docs" / "methods").glob("*.md")))
def test_every_method_doc_is_numbered_and_names_its_code(doc):
    text = (REPO / "docs" / "methods" / doc).read_text()
    assert re.search(r"^## 1\.", text, re.M), f"{doc}: sections are numbered `## N.` so `§N` references resolve"
    assert "src/longtail/" in text or "longtail." in text, f"{doc}: say where in the code the method lives"


def test_a_broken_reference_is_caught(tmp_path):
    assert problems("x", "docs/methods/ride.md", [99], ["R77"]) == ["x: docs/methods/ride.md has no §99, R77"]
    assert problems("x", "docs/methods/nothing.md", [], []) == ["x: docs/methods/nothing.md does not exist"]
    assert TAIL.match(" §2, §6 R1/R2.").group(0) == " §2, §6 R1/R2"
