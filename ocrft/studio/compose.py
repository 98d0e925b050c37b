"""Compose and validate a run's overrides exactly as ``python -m ocrft`` would, without running it.

The studio refuses a launch whose overrides the CLI would refuse (a misspelt key, a wrong
type, a bad value), so nothing starts that would only fail in its first second. Hydra's
compose errors name the key (``Key 'max_stepz' not in 'TrainConfig'``); ocrft's
:class:`~ocrft.config.ConfigError` does too.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

from omegaconf import DictConfig

from ocrft import conf_dir
from ocrft.config import ConfigError, register_configs
from ocrft.studio.override_policy import PolicyError, check_composed, check_overrides

# Hydra's GlobalHydra is a process-wide singleton: one composition at a time.
_LOCK = threading.Lock()
# The config groups a launch form offers, with the folder (under conf/) that lists them.
GROUPS = ("task", "model", "data", "peft", "quant", "train", "prompt", "eval", "tracking")


class OverrideError(ValueError):
    """Overrides the CLI would refuse; the message names the key (Hydra's or ocrft's text)."""


def group_options(group: str) -> list[str]:
    """The YAML names of a config group (``conf/<group>/*.yaml``), sorted."""
    return sorted(p.stem for p in (Path(conf_dir.CONF_DIR) / group).glob("*.yaml"))


@contextmanager
def _fresh_hydra() -> Iterator[None]:
    """Hydra initialized on ocrft's conf dir, even inside a running ``@hydra.main`` (task=studio),
    whose own GlobalHydra is put back afterwards."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    saved = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir.CONF_DIR), version_base="1.3"):
            yield
    finally:
        GlobalHydra.instance().hydra = saved


def compose(overrides: list[str], multirun: bool = False, *, roots: Optional[Sequence[Path]] = None,
            cwd: Optional[Path] = None) -> DictConfig:  # fmt: skip
    """The composed, validated config for ``overrides``; raises :class:`OverrideError`.

    For a multirun, sweep overrides (``a=1,2``, ``interval(...)``) are parsed but left out of
    the composition: Hydra composes one job at a time, and the sweeper checks them at launch.
    With ``roots``, the overrides are also held to what a launch from the studio may ask
    (ocrft.studio.override_policy), relative paths taken from ``cwd``.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from ocrft.validate import validate_config

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise OverrideError(str(err)) from None
    sweeps = [o for o in parsed if o.is_sweep_override()]
    if sweeps and not multirun:
        raise OverrideError(f"{', '.join(o.input_line for o in sweeps)}: a sweep needs multirun=true")
    try:
        if roots is not None:
            check_overrides(parsed)
        single = [o.input_line for o in parsed if not o.is_sweep_override()]
        register_configs()
        with _LOCK, _fresh_hydra():
            from hydra import compose as hydra_compose

            cfg = hydra_compose("config", overrides=single)
        if cfg.task == "studio":
            raise ConfigError("task=studio cannot be launched from the studio")
        validate_config(cfg)
        if roots is not None:
            check_composed(cfg, parsed, roots, cwd or Path.cwd())
    except (HydraException, OmegaConfBaseException, ConfigError, PolicyError) as err:
        raise OverrideError(_message(err)) from None
    return cfg


def _message(err: BaseException) -> str:
    """The error and its causes: Hydra says which override failed, OmegaConf (the cause) why."""
    parts: list[str] = []
    while err is not None and len(parts) < 4:
        text = str(err).split("\n    full_key:")[0].strip()  # OmegaConf appends its context lines
        if text and text not in parts:
            parts.append(text)
        err = err.__cause__
    return "\n".join(parts)
