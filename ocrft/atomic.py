"""Atomic file writes: a kill never leaves a half-written file where a whole one belongs.

A full disk (ENOSPC), a quota (EDQUOT) or a file-size limit (EFBIG, ``ulimit -f``) stops a
write the same way a kill does: the temporary file is removed, the previous file stays, and
the error becomes a :class:`DiskFullError` naming the file, which the CLI reports in one line
(``ocrft.runner.user_error_message``) so that the same command can be run again once there
is space.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import resource
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# Libraries that write in native code lose the OSError: safetensors keeps the OS message and
# its "os error N"; torch.save's stream writer only says the write failed (checked below).
_NATIVE_DISK_FULL = [
    (re.compile(r"No space left on device|os error 28\b|database or disk is full"), errno.ENOSPC),  # last: SQLite
    (re.compile(r"File too large|os error 27\b"), errno.EFBIG),
    (re.compile(r"Disk quota exceeded|os error 122\b"), errno.EDQUOT),
]
_TORCH_WRITE_FAILED = re.compile(r"PytorchStreamWriter failed writing|file write failed|inline_container\.cc.*unexpected pos")
# Below this much free space a failed write of torch's writer is taken to be the full disk.
_NEARLY_FULL_BYTES = 1 << 20
# The first words of the message, by errno: what happened, and what frees the way.
_WHAT = {
    errno.ENOSPC: ("no space left on device", "free space on {mount}"),
    errno.EDQUOT: ("disk quota exceeded", "free space on {mount} (or raise your quota)"),
    errno.EFBIG: ("file size limit reached", "raise the file size limit (ulimit -f) or write elsewhere"),
}
KEPT_DEFAULT = "files already complete were left as they were and no partial file replaced one"


class DiskFullError(OSError):
    """A write that failed for want of space (or quota, or file-size limit), naming the file.

    ``kept`` says what survived, for the user: e.g. "checkpoint-4 is kept".
    """

    def __init__(self, code: int, path: str | os.PathLike, kept: Optional[str] = None):
        super().__init__(code, os.strerror(code), str(path))
        self.kept = kept


def disk_full_errno(err: BaseException, path: Optional[str | os.PathLike] = None) -> Optional[int]:
    """The errno (ENOSPC, EFBIG or EDQUOT) if ``err`` or an error it was raised from or during
    is a failed write for want of space; None otherwise.

    ``path`` (what was being written) lets an opaque torch.save failure be recognised: it is
    disk-full if that filesystem is nearly full or a file-size limit is set.
    """
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
            return err.errno
        text = str(err)
        for pattern, code in _NATIVE_DISK_FULL:
            if pattern.search(text):
                return code
        if path is not None and _TORCH_WRITE_FAILED.search(text):
            if _free_bytes(Path(path)) < _NEARLY_FULL_BYTES:
                return errno.ENOSPC
            if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
                return errno.EFBIG
        err = err.__cause__ or err.__context__
    return None


@contextlib.contextmanager
def naming(path: str | os.PathLike, kept: Optional[str] = None) -> Iterator[None]:
    """Re-raise a disk-full error inside the block as a :class:`DiskFullError` naming ``path``."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as err:
        code = disk_full_errno(err, path)
        if code is None:
            raise
        raise DiskFullError(code, path, kept) from err


def disk_full_message(err: BaseException) -> Optional[str]:
    """The one-line message for a disk-full error anywhere in ``err``'s chain, else None.

    "no space left on device while writing <path>: free space on <mount> and run the same
    command again; <what was kept>".
    """
    code = disk_full_errno(err)
    if code is None:
        return None
    found = _first_disk_full(err)
    path = getattr(found, "filename", None) or getattr(err, "filename", None)
    kept = getattr(found, "kept", None) or KEPT_DEFAULT
    what, remedy = _WHAT[code]
    where = f" while writing {path}" if path else ""
    mount = mount_point(Path(path)) if path else "the output's filesystem"
    return f"{what}{where}: {remedy.format(mount=mount)} and run the same command again; {kept}"


def _first_disk_full(err: BaseException) -> Optional[BaseException]:
    # The outermost error that names its file: a DiskFullError wraps the library's error.
    seen, chain = set(), []
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        chain.append(err)
        err = err.__cause__ or err.__context__
    named = [e for e in chain if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS and e.filename]
    return named[0] if named else None


def _existing(path: Path) -> Path:
    """``path`` made absolute, or its nearest existing parent (a file not yet written)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_point(path: Path) -> str:
    """The mount point of the filesystem holding ``path`` (or its nearest existing parent)."""
    path = _existing(path)
    while not os.path.ismount(path):
        path = path.parent
    return str(path)


def _free_bytes(path: Path) -> int:
    stats = os.statvfs(_existing(path))
    return stats.f_bavail * stats.f_frsize


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temporary file beside ``path``, fsync, then rename over it.

    On any failure (a full disk included) the temporary file is removed and ``path`` keeps its
    previous content; a disk-full error is raised as :class:`DiskFullError` naming ``path``.
    """
    path = Path(path)
    kept = f"the previous {path.name} is unchanged" if path.exists() else f"no partial {path.name} was left"
    with naming(path, kept):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(obj, ensure_ascii=False, indent=indent, default=str) + "\n")


def write_jsonl(path: str | os.PathLike, rows) -> Path:
    return write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


def replace_dir(new: Path, target: Path, aside: Path) -> Path:
    """Put the finished folder ``new`` in place of ``target``, for folders what :func:`write_bytes`
    is for files: ``target`` (if any) is renamed to ``aside``, ``new`` to ``target``, then
    ``aside`` is deleted. Renames within one filesystem are atomic, so a kill at any point
    leaves ``target`` whole (old or new) or, between the two renames, the old copy at ``aside``,
    which the caller's leftover cleanup knows by name. Returns ``target``."""
    import shutil

    if target.exists():
        os.rename(target, aside)
    os.rename(new, target)
    shutil.rmtree(aside, ignore_errors=True)
    return target
