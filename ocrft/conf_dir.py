"""Where ocrft's own config tree (conf/) is, in a repo checkout and in an installed wheel.

The repo keeps conf/ at its top level; a wheel carries the same files as ``ocrft/conf``
(setup.py copies them at build time). Users add configs of their own with ``--config-dir``
or ``hydra.searchpath`` (docs/configs.md), never by editing this tree.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent

# An installed wheel has ocrft/conf; a checkout (editable install, python -m from the repo)
# has conf/ beside the package.
CONF_DIR: Path = _PACKAGE / "conf" if (_PACKAGE / "conf").is_dir() else _PACKAGE.parent / "conf"
