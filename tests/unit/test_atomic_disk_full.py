"""ocrft.atomic and the eval checkpoint on a filesystem that is really full (tests/diskfull.py):
the error names the file, the previous file is intact, no temporary file is left, and the
runner's one-line message says where to free space."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from ocrft import atomic
from ocrft.atomic import DiskFullError
from ocrft.evaluation.checkpoint import Checkpoint
from ocrft.runner import user_error_message

FULL = {errno.ENOSPC, errno.EFBIG}


def test_atomic_write_on_full_fs_keeps_previous_file_and_names_it(fs):
    target = fs.root / "results.json"
    atomic.write_json(target, {"overall_cer": 0.5})
    fs.fill(leave=8192)
    with fs.limited(), pytest.raises(DiskFullError) as caught:
        atomic.write_json(target, {"samples": ["x" * 100] * 2000})  # ~200 kB
    assert caught.value.errno in FULL
    assert caught.value.filename == str(target)
    assert json.loads(target.read_text()) == {"overall_cer": 0.5}
    assert sorted(p.name for p in fs.root.iterdir() if p.name != ".filler") == ["results.json"]  # no temp file left
    message = user_error_message(caught.value)
    assert f"while writing {target}" in message
    assert "run the same command again; the previous results.json is unchanged" in message
    if fs.kind == "tmpfs":
        assert message.startswith(f"no space left on device while writing {target}: free space on {fs.root} ")
    fs.free()
    atomic.write_json(target, {"overall_cer": 0.25})  # the same write succeeds once there is room
    assert json.loads(target.read_text()) == {"overall_cer": 0.25}


def test_checkpoint_append_on_full_fs_keeps_whole_lines_and_reloads(fs):
    path = fs.root / "eval_checkpoint.jsonl"
    row = lambda i: {"id": f"s{i}", "prediction": "y" * 3000}  # noqa: E731
    with Checkpoint(path) as ckpt:
        ckpt.extend([row(0), row(1)])
    fs.fill(leave=64 * 1024)
    appended = 2
    with fs.limited(), pytest.raises(DiskFullError) as caught:
        with Checkpoint(path) as ckpt:
            for i in range(2, 200):  # ~600 kB in all: the disk fills mid-line
                ckpt.append(row(i))
                appended += 1
    assert caught.value.errno in FULL and caught.value.filename == str(path)
    assert f"the {appended} finished samples in eval_checkpoint.jsonl are kept" in user_error_message(caught.value)
    lines = path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [f"s{i}" for i in range(appended)]  # no torn line
    fs.free()
    with Checkpoint(path) as ckpt:
        assert sorted(ckpt.rows, key=lambda k: int(k[1:])) == [f"s{i}" for i in range(appended)]
        ckpt.append(row(appended))
    assert len(path.read_text().splitlines()) == appended + 1


def test_torn_line_from_a_real_enospc_is_dropped_on_load(fs):
    """A writer that is not ocrft's (or a crash before the truncate) leaves the cut line."""
    path = fs.root / "eval_checkpoint.jsonl"
    with Checkpoint(path) as ckpt:
        ckpt.extend([{"id": "a", "prediction": "1"}, {"id": "b", "prediction": "2"}])
    fs.fill(leave=16 * 1024)
    with fs.limited(), pytest.raises(OSError) as caught, open(path, "ab", buffering=0) as f:
        for _ in range(100):
            f.write(json.dumps({"id": "c", "prediction": "z" * 100_000}).encode())
    assert caught.value.errno in FULL
    assert not path.read_text().endswith("\n")  # really torn
    fs.free()
    with Checkpoint(path) as ckpt:
        assert sorted(ckpt.rows) == ["a", "b"]
    assert path.read_text().endswith("\n") and len(path.read_text().splitlines()) == 2


@pytest.mark.parametrize(
    "err, first_words",
    [
        (OSError(errno.ENOSPC, "No space left on device"), "no space left on device: "),
        (OSError(errno.EDQUOT, "Disk quota exceeded", "/x/y.json"), "disk quota exceeded while writing /x/y.json: "),
        (RuntimeError("Error while serializing: I/O error: File too large (os error 27)"), "file size limit reached: "),
    ],
)
def test_disk_full_anywhere_in_the_chain_is_one_line(err, first_words):
    try:
        try:
            raise err
        except Exception as inner:
            raise ValueError("a later step failed too") from inner
    except ValueError as outer:
        message = user_error_message(outer)
    assert message.startswith(first_words) and "run the same command again;" in message
    assert "\n" not in message


def test_other_errors_are_not_disk_full():
    assert atomic.disk_full_errno(OSError(errno.EACCES, "Permission denied")) is None
    assert user_error_message(RuntimeError("boom")) is None
    # torch's opaque writer failure counts only when the target's filesystem is full
    opaque = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert atomic.disk_full_errno(opaque, Path("/")) is None or atomic._free_bytes(Path("/")) < (1 << 20)


def test_mount_point_of_a_missing_file_is_its_filesystem(fs):
    assert atomic.mount_point(fs.root / "not" / "yet" / "there.json") == (str(fs.root) if fs.kind == "tmpfs" else
                                                                          atomic.mount_point(fs.root))  # fmt: skip
