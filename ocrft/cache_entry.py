"""Build a cache entry (a folder under ``$OCRFT_CACHE``) once across processes; never trust a broken one.

Several processes can want the same entry at the same moment: the ranks of one ``torchrun``,
two runs started side by side, the workers of a sweep. Rank 0 alone building is not enough
(two runs each have a rank 0), so one process builds under a file lock beside the entry while
the others wait for it. The build goes into a temporary folder beside the target; its files
are checked, a marker listing every file and its size is written last, and the folder is
renamed into place. A published entry is therefore either whole or absent.

An entry without a valid marker (a build killed by an older ocrft, a folder copied by hand,
a truncated file, the processor-only folder a non-zero rank used to publish) is rebuilt, with
a warning that says what was wrong.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

from ocrft import atomic

log = logging.getLogger(__name__)

MARKER = ".ocrft_complete.json"  # written last: {"files": {relative path: size in bytes}}


class CacheBuildError(RuntimeError):
    """A build wrote a folder that is not a complete entry (it is not published)."""


def entry_problem(folder: Path, required: Sequence[str] = ()) -> Optional[str]:
    """Say what is wrong with a cache entry, or return None if it is complete.

    Args:
        folder: the entry.
        required: files the entry must hold (relative paths), besides what its marker lists.
    """
    if not folder.is_dir():
        return "missing"
    try:
        sizes = json.loads((folder / MARKER).read_text())["files"]
    except FileNotFoundError:
        return f"no completion marker {MARKER} (a build that did not finish, or one by an older ocrft)"
    except (ValueError, KeyError, TypeError) as e:
        return f"unreadable completion marker {MARKER}: {e!r}"
    return files_problem(folder, sizes, required)


def files_problem(folder: Path, sizes: dict[str, int], required: Sequence[str] = ()) -> Optional[str]:
    """Check that ``folder`` holds ``required`` and every file of ``sizes`` at its size."""
    for name in required:
        if name not in sizes:
            return f"no {name}"
    for name, size in sizes.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, the build wrote {size}"
        if name.endswith(".safetensors"):
            problem = safetensors_problem(path)
            if problem:
                return f"{name}: {problem}"
    return None


def safetensors_problem(path: Path) -> Optional[str]:
    """Say why a safetensors file is cut or corrupt, reading its header only (cheap), or None."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than the 8-byte header length"
        length = int.from_bytes(head, "little")
        if 8 + length > size:
            return f"header of {length} bytes runs past the end of the file ({size} bytes)"
        try:
            header = json.loads(f.read(length))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            return f"unreadable header ({e!r})"
    if 8 + length + end != size:
        return f"the header says the tensors end at byte {8 + length + end}, the file has {size} bytes"
    return None


def build_once(out: Path, build: Callable[[Path], None], required: Sequence[str], what: str) -> Path:
    """Return ``out``, building it first with ``build(folder)`` unless it is a complete entry.

    One process builds while the others (threads, processes, other runs on the same cache)
    wait on the lock ``<parent>/.<name>.lock`` and then use its result.

    Args:
        out: the entry's folder.
        build: writes the entry's files into the (empty, temporary) folder it is given.
        required: files a complete entry holds; a build that misses one is an error.
        what: what the entry is, for log lines and errors (e.g. "tiny qwen2_vl checkpoint").

    Raises:
        CacheBuildError: the build wrote a folder without a required file or with a cut one.
    """
    if entry_problem(out, required) is None:
        return out
    from filelock import FileLock, Timeout

    out.parent.mkdir(parents=True, exist_ok=True)
    # Beside the entry, not inside: the entry folder is replaced whole.
    lock = FileLock(out.parent / f".{out.name}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another process building %s %s (lock %s)", what, out, lock.lock_file)
        lock.acquire()
    try:
        problem = entry_problem(out, required)  # the process we waited for has built it
        if problem is None:
            log.info("using %s %s, built by another process", what, out)
            return out
        if problem != "missing":
            log.warning("cached %s %s is broken (%s): rebuilding it", what, out, problem)
        _discard_leftovers(out)
        _build_and_publish(out, build, required, what)
    finally:
        lock.release()
    return out


def _build_and_publish(out: Path, build: Callable[[Path], None], required: Sequence[str], what: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        log.info("building %s in %s", what, out)
        build(tmp)
        sizes = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        problem = files_problem(tmp, sizes, required)
        if problem:
            raise CacheBuildError(f"building {what} for {out} wrote an incomplete folder ({problem}); not published")
        atomic.write_json(tmp / MARKER, {"files": sizes})
        # a broken entry is moved aside first, so a kill mid-delete leaves no half folder at `out`
        atomic.replace_dir(tmp, out, out.parent / f".{out.name}.{os.urandom(4).hex()}.tmp")  # a leftover name _discard_leftovers knows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _discard_leftovers(out: Path) -> None:
    """Remove temporary folders of killed builds of this entry (safe: we hold its lock)."""
    for old in out.parent.glob(f".{out.name}.*.tmp"):
        shutil.rmtree(old, ignore_errors=True)
