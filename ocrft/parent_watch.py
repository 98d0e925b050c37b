"""A run started by the studio stops when the studio dies.

The studio starts each run in a session of its own (so that the studio's Ctrl-C does not
reach it) and sets ``OCRFT_PARENT_PID``. Killed outright (SIGKILL, a crash, the OOM killer),
the studio can no longer stop its runs, and a run left going on unseen would clash with the
same run resumed from the restarted studio's list. So the run watches its parent: once it is
re-parented, it interrupts itself as Ctrl-C does, and run.json and its last checkpoint stay
for the resume.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

ENV = "OCRFT_PARENT_PID"
EVERY_S = 1.0

log = logging.getLogger(__name__)


def watch_parent() -> None:
    """Start the watch when ``OCRFT_PARENT_PID`` names this process's parent; else do nothing."""
    expected = os.environ.pop(ENV, "")  # popped: the run's own children are not the studio's
    if not expected.isdigit() or int(expected) != os.getppid():
        return
    threading.Thread(target=_watch, args=(int(expected),), name="parent-watch", daemon=True).start()


def _watch(parent: int) -> None:
    stop = threading.Event()
    while not stop.wait(EVERY_S):
        if os.getppid() != parent:
            log.warning("the studio that started this run (pid %d) is gone: stopping as on Ctrl-C; "
                        "resume the job from the studio to continue", parent)  # fmt: skip
            os.kill(os.getpid(), signal.SIGINT)
            return
