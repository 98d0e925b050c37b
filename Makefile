# ocrft: `make demo` and `make test` do all set-up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: demo demo-base test test-fast test-all fuzz bench gpu-check gpu-wheels lint mlflow-ui dashboard install clean help

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

bench: $(STAMP) ## benchmarks: each prints a ratio against a baseline run beside it (the GPU check apart)
	for b in bench/bench_*.py; do [ $$b = bench/bench_gpu.py ] || $(PY) $$b || exit 1; done

gpu-check: $(STAMP) ## the GPU check (bench/gpu_check.sh) with tiny sizes on this CPU; on a GPU: bash bench/gpu_check.sh
	bash bench/gpu_check.sh --smoke --out $(or $(GPU_OUT),experiments/gpu)

# What a lent device machine lacks (its python3 3.12 holds torch): wheels for bench/gpu_check.sh, in .whl/
GPU_WHEELS := transformers==5.23.0 trl==1.16.0 peft==0.21.2 hydra-core==1.3.8 omegaconf==2.3.0 rapidfuzz==3.14.3 \
	datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 bitsandbytes==0.50.2
gpu-wheels: ## download the wheels bench/gpu_check.sh installs on a device machine (see experiments/gpu/README.md)
	mkdir -p .whl && grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
	python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
		--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $(GPU_WHEELS)
	python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3  # an sdist only: built here, pure Python
	python3 bench/slim_wheel.py .whl/bitsandbytes-*.whl --keep cuda13  # the device's CUDA only: all must fit 64 MiB

lint: $(STAMP) ## byte-compile everything (catches syntax errors fast)
	$(PY) -m compileall -q ocrft hydra_plugins tests bench

mlflow-ui: $(STAMP) ## open the MLflow UI on the local store
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1

dashboard: $(STAMP) ## open optuna-dashboard on the local study store
	$(VENV)/bin/optuna-dashboard sqlite:///optuna.db --host 127.0.0.1

clean: ## remove run outputs (not the venv)
	rm -rf outputs multirun
