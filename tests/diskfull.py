"""A real filesystem that fills up on demand, for the disk-full tests.

Chosen once per test, in this order:
- ``tmpfs``: a small tmpfs mounted on a fresh folder (needs root and a kernel that allows
  the mount; this container does). ``fill(leave)`` writes a filler file so that about
  ``leave`` bytes stay free: every write past them fails with ENOSPC, for every process.
- ``rlimit``: no mount allowed. ``fill(leave)`` sets RLIMIT_FSIZE to ``leave`` bytes, per
  file, in this process (``limited()``) or in a child (``run`` passes a preexec_fn that
  also ignores SIGXFSZ, so the write fails with EFBIG instead of the signal killing it).

``OCRFT_DISKFULL=rlimit`` forces the second variant (to test it where mounting works).
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Optional

TMPFS_SIZE = "96m"
FILLER = ".filler"


class FullFs:
    """A folder ``root`` whose writes fail after ``fill(leave)``, until ``free()``."""

    def __init__(self, root: Path, kind: str):
        self.root = root
        self.kind = kind
        self.limit: Optional[int] = None

    def fill(self, leave: int, pid: Optional[int] = None) -> None:
        """Let about ``leave`` more bytes be written (tmpfs: in all; rlimit: per file, in
        children started after this, or in the running process ``pid``)."""
        self.free()
        self.limit = leave
        if self.kind == "rlimit" and pid is not None:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (leave, resource.RLIM_INFINITY))
        if self.kind == "tmpfs":
            stats = os.statvfs(self.root)
            size = stats.f_bavail * stats.f_frsize - leave
            with open(self.root / FILLER, "wb") as f:
                f.truncate(0)
                chunk = b"\0" * (1 << 20)
                try:
                    while size > 0:
                        size -= f.write(chunk[: min(size, len(chunk))])
                except OSError as e:  # the process under test wrote meanwhile and filled it first:
                    if e.errno != errno.ENOSPC:  # full is what was asked for
                        raise

    def free(self) -> None:
        """Make room again."""
        self.limit = None
        (self.root / FILLER).unlink(missing_ok=True)

    def preexec(self) -> None:
        """For subprocess: the file-size limit of the rlimit variant (a no-op for tmpfs); SIGXFSZ
        ignored, so that a limit set later (``fill(pid=...)``) fails the write, not the process."""
        if self.kind == "rlimit":
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        if self.kind == "rlimit" and self.limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit, resource.RLIM_INFINITY))

    @contextlib.contextmanager
    def limited(self) -> Iterator[None]:
        """This process under the limit for the block (rlimit); the tmpfs is full for all anyway."""
        if self.kind != "rlimit" or self.limit is None:
            yield
            return
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        old = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit, old[1]))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, old)
            signal.signal(signal.SIGXFSZ, old_handler)

    def run(self, args: list[str], cwd: Path, timeout: float = 120):
        """``python -m ocrft *args`` in a child under the current limit; returns CompletedProcess."""
        return subprocess.run(ocrft(args), cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=timeout,
                              preexec_fn=self.preexec)  # fmt: skip

    def start(self, args: list[str], cwd: Path, log_file: Path) -> subprocess.Popen:
        """``python -m ocrft *args`` started in the background, output to ``log_file``."""
        with log_file.open("w") as out:
            return subprocess.Popen(ocrft(args), cwd=cwd, env=child_env(), stdout=out, stderr=subprocess.STDOUT,
                                    text=True, preexec_fn=self.preexec)  # fmt: skip


def ocrft(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "ocrft", *args]


def child_env() -> dict[str, str]:
    # one thread each: oversubscribed OpenMP threads spin on a shared 2-core machine
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _try_tmpfs(folder: Path) -> bool:
    if os.environ.get("OCRFT_DISKFULL") == "rlimit" or os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(folder)],
                          capture_output=True)  # fmt: skip
    return done.returncode == 0


@contextlib.contextmanager
def full_fs(folder: Path) -> Iterator[FullFs]:
    """A :class:`FullFs` on ``folder`` (created), unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = _try_tmpfs(folder)
    fs = FullFs(folder, "tmpfs" if mounted else "rlimit")
    try:
        yield fs
    finally:
        fs.free()
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=True)
