"""A stand-in for `python -m ocrft` in the sweeper tests: same `search_space` and `trial` keys,
training simulated so a trial takes milliseconds (or `sim.step_seconds` per step).

    python tests/assets/sweep_app/app.py --multirun hydra/sweeper=optuna hydra.sweeper.n_trials=4

The validation CER is a deterministic function of the params and the step. The job reports
it through ocrft.search.TrialReporter at each step exactly as training does, and can be made
to raise (`sim.raise_on_trials`, `sim.always_raise`) or return NaN (`sim.nan_on_trials`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ocrft.config import SearchSpaceConfig, TrialConfig
from ocrft.search import TrialReporter

log = logging.getLogger("sweep_app")


@dataclass
class SimConfig:
    lr: float = 0.01
    width: int = 8
    optimizer: str = "sgd"
    layers: Optional[list[str]] = None
    steps: int = 8
    step_seconds: float = 0.0
    raise_on_trials: list[int] = field(default_factory=list)
    nan_on_trials: list[int] = field(default_factory=list)
    always_raise: bool = False


@dataclass
class AppConfig:
    task: str = "sim"
    seed: int = 0
    run_dir: str = "outputs/${task}/${now:%Y-%m-%d_%H-%M-%S-%f}"
    sim: SimConfig = field(default_factory=SimConfig)
    search_space: SearchSpaceConfig = field(default_factory=SearchSpaceConfig)
    trial: TrialConfig = field(default_factory=TrialConfig)


ConfigStore.instance().store(name="base_config", node=AppConfig)
ConfigStore.instance().store(group="search_space", name="base_search_space", node=SearchSpaceConfig)


def val_cer(sim: DictConfig, step: int) -> float:
    """Best near lr=1e-2, wide, adam, few layers; falls towards that floor as steps pass."""
    floor = 0.05 + 0.1 * abs(math.log10(sim.lr) + 2) + 0.4 / sim.width + 0.05 * (sim.optimizer != "adam")
    floor += 0.02 * len(sim.layers or [])
    return floor + (1 - floor) * math.exp(-0.4 * (step + 1))


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    number = cfg.trial.trial_number
    if cfg.sim.always_raise or number in cfg.sim.raise_on_trials:
        raise RuntimeError(f"simulated crash in trial {number}")
    reporter = TrialReporter.from_config(cfg.trial)
    status, cer, steps = "finished", float("nan"), 0
    for step in range(cfg.sim.steps):
        time.sleep(cfg.sim.step_seconds)
        cer, steps = val_cer(cfg.sim, step), step + 1
        if reporter is not None:
            reporter.report(cer, step)
            if reporter.should_prune():
                status = "pruned"
                break
    if number in cfg.sim.nan_on_trials:
        cer = float("nan")
    record = {"status": status, "metrics": {"val/cer": cer}, "steps": steps, "mlflow_run_id": None,
              "sim": OmegaConf.to_container(cfg.sim)}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(json.dumps(record))
    log.info("trial %s %s after %d steps: val/cer=%.4f", number, status, steps, cer)
    return {"val/cer": cer, "status": status}


if __name__ == "__main__":
    main()
