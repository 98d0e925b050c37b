"""What a run launched from the studio may ask for: ocrft's own configuration, and no more.

On the command line a config is trusted: it is the user's. A launch from the studio's form
or jobs API may come from a hostile page (docs/studio.md, "Threat model"), so its overrides
are held to ocrft's config groups and schema keys:

- no ``_target_`` anywhere: Hydra instantiates it, and ``shutil.copyfile`` or
  ``shutil.rmtree`` pass Hydra's own allowlist;
- no ``hydra.*`` key and no ``hydra/`` group but the sweeper's: ``hydra/sweeper=<name>`` and
  ``hydra.sweeper.<key>`` for the keys in :data:`SWEEPER_KEYS` (``hydra.callbacks``,
  ``hydra.run.dir``, ``hydra/launcher`` are refused);
- ``+key`` / ``++key`` only for a config group (``+experiment=demo``) or a key of ocrft's
  schema (``ocrft.config.RunConfig``);
- no key that runs code from elsewhere (:data:`CODE_KEYS`) or that only the sweeper sets
  (``trial.*``);
- every folder or file a run writes (:data:`WRITTEN_PATHS`) inside ``studio.roots``, checked
  on the composed, interpolated value, so ``${oc.env:HOME}`` or ``..`` lead nowhere else.

Every refusal is an :class:`~ocrft.studio.compose.OverrideError` naming the override.
"""

from __future__ import annotations

import dataclasses
import typing
import urllib.parse
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from ocrft import conf_dir
from ocrft.config import RunConfig

# The sweeper's keys a sweep from the studio may set (fields of the Optuna sweeper's
# OptunaSweeperConf); storage is a written path and is checked like one.
SWEEPER_KEYS = frozenset({"n_trials", "n_jobs", "study_name", "direction", "metric", "storage", "max_failure_rate",
                          "failure_min_trials", "heartbeat_interval", "sampler", "pruner"})  # fmt: skip
# Keys that make a run execute code that is not ocrft's, and why.
CODE_KEYS = {
    "model.trust_remote_code": "runs the Python code shipped in the model's folder",
    "trial": "is set by the sweeper only (an Optuna trial's identity)",
}
# Where a run writes: folders and files, and URIs of file-backed stores (sqlite:///x.db).
WRITTEN_PATHS = ("run_dir", "data.output_dir", "data.cache_dir", "predict.output", "report.output",
                 "merge.output_dir", "tracking.uri", "hydra.sweeper.storage", "hydra.sweep.dir")  # fmt: skip


class PolicyError(ValueError):
    """An override a launch from the studio may not make; the message names it."""


def config_groups() -> frozenset[str]:
    """The config groups under conf/ (folders holding YAML files), ``hydra/sweeper`` included."""
    root = Path(conf_dir.CONF_DIR)
    return frozenset(str(d.relative_to(root)) for d in root.rglob("*") if d.is_dir() and any(d.glob("*.yaml")))


def check_overrides(parsed: Iterable[Any]) -> None:
    """Refuse overrides (Hydra's parsed ``Override`` objects) outside ocrft's configuration.

    Raises:
        PolicyError: naming the first override refused and why.
    """
    groups = config_groups()
    for override in parsed:
        line, key = override.input_line, override.key_or_group
        if "_target_" in line:
            raise PolicyError(f"{line}: _target_ names a Python callable to run; a launch from the studio may not")
        if override.package is not None:  # group@package can place a config under hydra.*
            raise PolicyError(f"{line}: a package (@) override is the command line's, not the studio's")
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):
            _check_hydra(line, key, groups)
            continue
        top = key.split(".")[0]
        if top in CODE_KEYS or key in CODE_KEYS:
            raise PolicyError(f"{line}: {key} {CODE_KEYS.get(key) or CODE_KEYS[top]}; set it on the command line")
        adds = override.is_add() or override.is_force_add()
        if adds and key not in groups and not schema_has(key):
            raise PolicyError(f"{line}: {key} is neither a config group nor a key of ocrft's config")


def _check_hydra(line: str, key: str, groups: frozenset[str]) -> None:
    if key in groups and key == "hydra/sweeper":
        return
    parts = key.split(".")
    if len(parts) >= 3 and parts[1] == "sweeper" and parts[2] in SWEEPER_KEYS:
        return
    raise PolicyError(f"{line}: only hydra/sweeper=<name> and hydra.sweeper.<{'|'.join(sorted(SWEEPER_KEYS))}> "
                      f"may be set from the studio; other hydra keys (callbacks, run and sweep dirs, launchers) "
                      f"are the command line's")  # fmt: skip


def schema_has(key: str, schema: type = RunConfig) -> bool:
    """Whether dotted ``key`` is a field of ocrft's typed config."""
    node: Any = schema
    for part in key.split("."):
        if not dataclasses.is_dataclass(node):
            return False
        hints = typing.get_type_hints(node)
        if part not in hints:
            return False
        node = _unwrap(hints[part])
    return True


def _unwrap(hint: Any) -> Any:
    """``Optional[X]`` -> ``X``; ``list[X]`` stays a list (no keys below it)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint


def check_composed(cfg: Any, parsed: Sequence[Any], roots: Sequence[Path], cwd: Path) -> None:
    """Refuse a composed ``cfg`` with a ``_target_`` anywhere, or whose overridden write
    locations lie outside ``roots``.

    Only the locations the overrides (``parsed``) set are checked: a path that ocrft's own
    config sets (``tracking.uri=sqlite:///mlflow.db`` beside the studio) is the CLI's default,
    not a choice of the request. A location may not be swept: each value would need checking.
    """
    from omegaconf import OmegaConf

    if _has_target(OmegaConf.to_container(cfg, resolve=False)):
        raise PolicyError("the composed config has a _target_ (a Python callable to run); a launch from the "
                          "studio may not")  # fmt: skip
    for override in parsed:
        key = override.key_or_group
        if key not in WRITTEN_PATHS:
            continue
        if override.is_sweep_override():
            raise PolicyError(f"{override.input_line}: {key} may not be swept from the studio")
        # hydra.* is not part of the composed job config: its value is the override's own
        raw = override.value() if key.startswith("hydra.") else OmegaConf.select(cfg, key, default=None)
        path = _file_of(str(raw)) if raw is not None else None
        if path is not None and within(path, roots, cwd) is None:
            raise PolicyError(f"{key}={raw}: outside the studio's roots ({', '.join(map(str, roots))}); "
                              f"a launched run writes only there")  # fmt: skip


def _has_target(node: Any) -> bool:
    if isinstance(node, dict):
        return "_target_" in node or any(_has_target(v) for v in node.values())
    return isinstance(node, list) and any(_has_target(v) for v in node)


def _file_of(value: str) -> Optional[str]:
    """The local path a written value names: a path, or a ``sqlite:``/``file:`` URI's path;
    None for a server (``http://``, ``postgresql://``)."""
    scheme = urllib.parse.urlsplit(value).scheme
    if not scheme or len(scheme) == 1:  # no scheme, or a Windows drive letter
        return value
    if scheme == "sqlite":
        return value.split(":///", 1)[1] if ":///" in value else ""
    if scheme == "file":
        return urllib.parse.urlsplit(value).path
    return None


def within(path: str | Path, roots: Sequence[Path], cwd: Path) -> Optional[Path]:
    """``path`` (relative ones taken from ``cwd``) resolved, symlinks and ``..`` undone, or None
    when it lies outside every root."""
    p = Path(path).expanduser()
    resolved = (p if p.is_absolute() else cwd / p).resolve()
    for root in roots:
        r = (root if root.is_absolute() else cwd / root).resolve()
        if resolved == r or r in resolved.parents:
            return resolved
    return None
