"""One module per task (``task=<name>``), each a ``run_<task>(cfg, ctx)`` that reads the config
and calls the layers below. A task never imports another task (import-linter contract)."""
