"""ocrft's Hydra sweeper on Optuna (``hydra/sweeper=optuna``); see docs/sweeps.md."""
