"""task=prepare removes what killed runs left beside its output (found by tests/integration/test_kill_fuzz.py).

A SIGKILL during the import leaves the partial build ``.OUT.tmp-<pid>-<ns>`` (a copy of part
of the data set); one between the two renames of the swap leaves the previous output as
``OUT.old-<time>-<pid>``. Nothing reads them; without this they piled up, one per kill.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.files import make_export
from tests.helpers import prepare


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_a_finished_prepare_removes_the_leftovers_of_killed_runs_only(tmp_path):
    make_export(tmp_path / "export", pages=6)
    out = tmp_path / "work" / "prepared"
    gone = dead_pid()
    killed_build = out.parent / f".prepared.tmp-{gone}-1733000000000000000"
    set_aside = out.parent / f"prepared.old-20261201-124500-{gone}"
    running_build = out.parent / f".prepared.tmp-{os.getpid()}-1"  # a live process: maybe another prepare
    unrelated = [out.parent / "prepared.old-notes", out.parent / f".other.tmp-{gone}-1"]
    for folder in (killed_build, set_aside, running_build, *unrelated):
        (folder / "lines").mkdir(parents=True)
        (folder / "lines" / "0.png").write_bytes(b"part of a killed run's output")
    (set_aside / "prepare_report.json").write_text("{}")

    prepare(tmp_path, "page_xml", f"data.input_dir={tmp_path / 'export'}", f"data.output_dir={out}", "data.target_height=16")

    assert sorted(p.name for p in out.parent.iterdir()) == sorted(p.name for p in (out, running_build, *unrelated))
    assert json.loads((out / "prepare_report.json").read_text())["lines_written"]["total"] > 0
