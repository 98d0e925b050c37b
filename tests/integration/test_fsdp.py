"""FSDP2 on CPU (gloo, 2 ranks): generation, evaluation, saving and restoring on sharded weights.

The worker (fsdp_worker.py) shards a LoRA model the way accelerate's FSDP2 plugin does and
calls ocrft's own generation, evaluate_records, save_model and load_weights with it, as
train.py does under `accelerate launch --config_file conf/accelerate/fsdp.yaml`.
"""

from __future__ import annotations

import json
import sys
import pytest

from tests.helpers import REPO, launch


@pytest.mark.slow
@pytest.mark.integration
def test_sharded_model_generates_saves_and_restores_like_the_whole_one(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    launch([*torchrun, "-m", "tests.integration.fsdp_worker", str(tmp_path)], cwd=REPO, timeout=300)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    reference = ranks[0]["reference"]  # the same unsharded model's output, before sharding
    assert ranks[1]["reference"] == reference and len(set(reference)) > 1
    for result in ranks:
        assert result["is_sharded"]
        # each rank generated its own rows (3 and 1: one rank kept stepping for the other)
        assert result["sharded"] == [reference[i] for i in result["mine"]]
        assert result["spoiled"] != reference  # zeroing the adapter's shards changed the output
        assert result["restored"] == reference  # load_weights put every shard back
        assert result["steps_changed_adapter"] == [True, True]  # training goes on after a validation
        assert result["sharded_after_generate"]
    assert ranks[0]["saved"] == str(tmp_path / "adapter") and ranks[1]["saved"] is None  # rank 0 writes
    assert ranks[0]["saved_matches_reference"]  # the gathered adapter file holds the whole tensors
    assert ranks[0]["restored_matches_reference"]
    assert ranks[0]["eval_paths"] == ["results", "results_report"] and ranks[1]["eval_paths"] == []
    # all ranks generated the eval split together (batches of 2); rank 0 wrote what it scored
    samples = json.loads((tmp_path / "results.json").read_text())["samples"]
    assert [s["prediction"] for s in samples] == reference
    assert ranks[0]["eval_cer"] == 0.0 and ranks[1]["eval_cer"] is None
