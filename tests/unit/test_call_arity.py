"""Seams are keyword seams: no call in ocrft/ (or the sweeper plugin) passes more than four
positional arguments, so a reordered or inserted parameter cannot silently shift a value into
the wrong slot (issue 23). Logging calls are exempt: their extra arguments fill a format
string, as print's do, and name nothing."""

from __future__ import annotations

import ast

from tests.helpers import REPO

MAX_POSITIONAL = 4
LOGGING = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def is_logging(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr in LOGGING and isinstance(func.value, ast.Name)
            and func.value.id in {"log", "logger", "logging"})  # fmt: skip


def long_calls(source: str) -> list[tuple[int, str, int]]:
    """(line, callee, positional count) of every call passing more than MAX_POSITIONAL."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and not is_logging(node.func):
            count = sum(not isinstance(a, ast.Starred) for a in node.args)
            if count > MAX_POSITIONAL:
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "?")
                found.append((node.lineno, name, count))
    return found


def test_the_check_finds_a_long_call_and_spares_logging():
    assert long_calls("f(1, 2, 3, 4, 5)\nf(1, 2, 3, 4, e=5)\nlog.info('%s %s %s %s %s', 1, 2, 3, 4, 5)") == [(1, "f", 5)]


def test_no_call_passes_more_than_four_positional_arguments():
    files = sorted([*(REPO / "ocrft").rglob("*.py"), *(REPO / "hydra_plugins").rglob("*.py")])
    assert len(files) > 100
    offenders = [f"{f.relative_to(REPO)}:{line} {name}() gets {n} positional arguments"
                 for f in files for line, name, n in long_calls(f.read_text())]  # fmt: skip
    assert offenders == []
