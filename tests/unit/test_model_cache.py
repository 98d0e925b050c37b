"""The offline checkpoint cache: one builder across processes, whole folders only, broken ones rebuilt.

The bug these guard: under torchrun both ranks built the tiny checkpoint; save_pretrained
writes config and weights on rank 0 only, so rank 1's folder held the processor alone, was
renamed into the cache first, and every later run failed with "no model.safetensors".
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import queue
import time
from pathlib import Path

import pytest

from ocrft.cache_entry import MARKER, CacheBuildError, build_once, entry_problem, safetensors_problem
from ocrft.models.loading import TINY_FILES, ensure_tiny, load_model, resolve_model


def write_entry(folder: Path, text: str = "x") -> None:
    """A cheap stand-in builder: two files, one in a subfolder."""
    (folder / "sub").mkdir()
    (folder / "a.txt").write_text(text)
    (folder / "sub" / "b.txt").write_text(text * 2)


def test_a_built_entry_is_published_whole_with_a_marker_of_its_files(tmp_path):
    out = build_once(tmp_path / "e", write_entry, ["a.txt"], "test entry")
    assert json.loads((out / MARKER).read_text()) == {"files": {"a.txt": 1, "sub/b.txt": 2}}
    assert entry_problem(out, ["a.txt"]) is None
    # Nothing but the entry and its lock is left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".e.lock", "e"]


def test_a_complete_entry_is_reused_without_building(tmp_path):
    calls = []
    build_once(tmp_path / "e", lambda d: (calls.append(d), write_entry(d)), ["a.txt"], "test entry")
    build_once(tmp_path / "e", lambda d: (calls.append(d), write_entry(d)), ["a.txt"], "test entry")
    assert len(calls) == 1


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda e: (e / MARKER).unlink(), "no completion marker"),
        (lambda e: (e / "sub" / "b.txt").unlink(), "sub/b.txt is missing"),
        (lambda e: (e / "a.txt").write_text("longer"), "a.txt has 6 bytes, the build wrote 1"),
        (lambda e: (e / MARKER).write_text("{not json"), "unreadable completion marker"),
    ],
)
def test_a_broken_entry_is_rebuilt_with_a_warning_saying_why(tmp_path, caplog, damage, reason):
    out = build_once(tmp_path / "e", write_entry, ["a.txt"], "test entry")
    damage(out)
    assert reason in entry_problem(out, ["a.txt"])
    with caplog.at_level(logging.INFO, logger="ocrft.cache_entry"):
        build_once(out, lambda d: write_entry(d, "y"), ["a.txt"], "test entry")
    assert f"cached test entry {out} is broken ({reason}" in caplog.text
    assert (out / "a.txt").read_text() == "y" and entry_problem(out, ["a.txt"]) is None


def test_a_build_missing_a_required_file_is_refused_and_not_published(tmp_path):
    with pytest.raises(CacheBuildError, match=r"wrote an incomplete folder \(no weights.bin\); not published"):
        build_once(tmp_path / "e", write_entry, ["a.txt", "weights.bin"], "test entry")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".e.lock"]


def test_temporary_folders_of_killed_builds_are_cleaned_up_by_the_next_build(tmp_path):
    killed = tmp_path / ".e.abc123.tmp"
    killed.mkdir()
    (killed / "a.txt").write_text("half")
    build_once(tmp_path / "e", write_entry, ["a.txt"], "test entry")
    assert not killed.exists()


def test_safetensors_problem_reads_the_header_and_finds_a_cut_file(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(64, 64), "b": torch.zeros(64)}, path)
    assert safetensors_problem(path) is None
    whole = path.read_bytes()
    path.write_bytes(whole[:-100])  # a cut tail: the header is intact, the data is not
    assert "the tensors end at byte" in safetensors_problem(path)
    path.write_bytes(whole[:40])  # cut inside the header
    assert "runs past the end of the file" in safetensors_problem(path)
    path.write_bytes(whole[:5])
    assert "shorter than the 8-byte header length" in safetensors_problem(path)


def test_the_processor_only_folder_the_bug_left_is_rebuilt_into_a_loadable_checkpoint(tmp_path, caplog):
    from ocrft.models.qwen_vl import _tiny_processor

    broken = tmp_path / "qwen2_vl"
    _tiny_processor("qwen2_vl").save_pretrained(broken)  # what a rank-1 build published
    assert not (broken / "model.safetensors").exists()
    with caplog.at_level(logging.INFO, logger="ocrft.cache_entry"):
        out = ensure_tiny("qwen2_vl", root=tmp_path)
    assert "is broken (no completion marker" in caplog.text and "rebuilding it" in caplog.text
    assert entry_problem(out, TINY_FILES) is None
    model = load_model(resolve_model("qwen2_vl", str(out)), dtype="float32")
    assert model.config.model_type == "qwen2_vl"


def _ask_for_tiny_model_as_a_rank(rank: int, root: str, init_file: str, results) -> None:
    """One rank of a two-process gloo group asking for the uncached tiny model (a torchrun's ranks).

    Rank 1 goes first and rank 0 asks only once rank 1 is building: the build that used to
    publish a processor-only folder is rank 1's, and rank 0 must wait for it.
    """
    import torch.distributed as dist

    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("ocrft.cache_entry")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        if rank == 0:
            deadline = time.monotonic() + 120
            while not list(Path(root).glob(".qwen2_vl.*.tmp")):  # rank 1 holds the lock and builds
                assert time.monotonic() < deadline, "rank 1 never started building"
                time.sleep(0.01)
        out = ensure_tiny("qwen2_vl", root=Path(root))
        results.put((rank, str(out), entry_problem(out, TINY_FILES), messages))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_ranks_asking_at_once_get_one_complete_checkpoint_built_once(tmp_path):
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    root = tmp_path / "cache"
    procs = [ctx.Process(target=_ask_for_tiny_model_as_a_rank, args=(rank, str(root), str(tmp_path / "init"), results))
             for rank in (1, 0)]  # fmt: skip
    for p in procs:
        p.start()
    try:
        got, deadline = {}, time.monotonic() + 180
        while len(got) < len(procs):
            try:
                rank, out, problem, messages = results.get(timeout=1)
                got[rank] = (out, problem, messages)
            except queue.Empty:  # fail at once when a rank died, not after the timeout
                assert all(p.exitcode in (None, 0) for p in procs), f"a rank failed: {[p.exitcode for p in procs]}"
                assert time.monotonic() < deadline, "the ranks did not finish in 180 s"
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
    finally:
        for p in procs:  # a failed rank leaves the other one waiting in a collective
            if p.is_alive():
                p.kill()
    assert got[0][:2] == got[1][:2] == (str(root / "qwen2_vl"), None), "both ranks get the same complete folder"
    builds = [rank for rank, (_, _, messages) in got.items() for m in messages if m.startswith("building ")]
    assert builds == [1], f"exactly one build, by rank 1: {got}"
    lock = root / ".qwen2_vl.lock"
    assert f"waiting for another process building tiny qwen2_vl checkpoint {root / 'qwen2_vl'} (lock {lock})" in got[0][2]
    assert any(m.startswith("using tiny qwen2_vl checkpoint") for m in got[0][2])
    assert sorted(p.name for p in root.iterdir()) == [".qwen2_vl.lock", "qwen2_vl"]
    model = load_model(resolve_model("qwen2_vl", got[0][0]), dtype="float32")
    assert model.config.model_type == "qwen2_vl"


def test_building_a_tiny_checkpoint_leaves_the_global_rng_alone():
    """A run that builds its tiny model on an empty cache trains like one that finds it built."""
    import torch

    from ocrft.models.tiny import instantiate

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    instantiate(lambda config: torch.nn.Linear(config, 4), 4)  # any class: it draws its random init inside
    assert torch.equal(torch.rand(3), expected)


def test_tiny_weights_do_not_depend_on_the_callers_rng(tmp_path):
    """Every re-draw of a tiny build (Qwen's wider vision init too) comes from its own seed."""
    import torch
    from safetensors.torch import load_file

    from ocrft.models.registry import get_family

    weights = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        get_family("qwen2_vl").build_tiny(tmp_path / str(seed))
        weights.append(load_file(tmp_path / str(seed) / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
