"""docs/architecture.md traces one run file by file: every file it names exists, the trace
names at most eight files, and each function or class it names in a trace step is defined
in that step's file."""

from __future__ import annotations

import re

from tests.helpers import REPO

DOC = REPO / "docs" / "architecture.md"
STEP = re.compile(r"^\d+\. \*\*`(ocrft/[\w/]+\.py)`\*\*: (.*?)\.", re.M)


def trace_steps() -> list[tuple[str, list[str]]]:
    return [(path, re.findall(r"`(\w+)`", names)) for path, names in STEP.findall(DOC.read_text())]


def test_the_trace_names_at_most_eight_files_and_what_it_names_is_there():
    steps = trace_steps()
    assert 5 <= len(steps) <= 8 and len({p for p, _ in steps}) == len(steps)  # issue 23: at most 8 files
    for path, names in steps:
        source = (REPO / path).read_text()
        assert names, f"step {path} names no function"
        for name in names:
            assert re.search(rf"^\s*(def|class) {name}\b", source, re.M), f"{path} defines no {name}"


def test_every_file_the_doc_names_exists():
    named = set(re.findall(r"`((?:ocrft|hydra_plugins|tests|conf)/[\w/.-]+?)`", DOC.read_text()))
    assert len(named) > 10
    missing = [p for p in sorted(named) if not (REPO / p).exists()]
    assert missing == []
