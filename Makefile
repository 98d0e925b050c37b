# ocrft: `make demo` and `make test` do all set-up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: demo demo-base test test-fast test-all fuzz bench lint mlflow-ui dashboard install clean help

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24"
	$(PIP) install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install ocrft with its test extras

demo: $(STAMP) ## run the embedded demo end to end (CPU, about 5 minutes)
	$(PY) -m ocrft +experiment=demo

demo-base: $(STAMP) ## re-create the demo's pretrained OCR base (ocrft/assets/demo_base) from scratch (CPU, ~1 h)
	OMP_NUM_THREADS=1 $(PY) -m ocrft +experiment=demo_pretrain tracking=none run_dir=outputs/demo_pretrain
	rm -rf ocrft/assets/demo_base && mkdir -p ocrft/assets && cp -r outputs/demo_pretrain/best ocrft/assets/demo_base

test: $(STAMP) ## the layer rules, then everything but GPU tests (what CI runs)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -m "not gpu" -q

test-fast: $(STAMP) ## the quick edit loop: the layer rules, no slow or GPU tests
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -m "not slow and not gpu" -q

test-all: $(STAMP) ## every test, GPU ones included (needs CUDA)
	$(PY) -m pytest -q

fuzz: $(STAMP) ## kill fuzzing: SIGKILL each task at 10 seeded points and resume (CI does 2)
	OCRFT_KILL_POINTS=10 $(PY) -m pytest tests/integration/test_kill_fuzz.py -q

bench: $(STAMP) ## benchmarks: each prints a ratio against a baseline run beside it
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

lint: $(STAMP) ## byte-compile everything (catches syntax errors fast)
	$(PY) -m compileall -q ocrft hydra_plugins tests bench

mlflow-ui: $(STAMP) ## open the MLflow UI on the local store
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1

dashboard: $(STAMP) ## open optuna-dashboard on the local study store
	$(VENV)/bin/optuna-dashboard sqlite:///optuna.db --host 127.0.0.1

clean: ## remove run outputs (not the venv)
	rm -rf outputs multirun
