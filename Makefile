# PicTrace Serverless. `make run` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
WEIGHTS ?= sscd
PREPROCESS ?=
MODEL_DIR ?= layers/model/model
SAMPLES ?= data/samples
PORT ?= 8000

export SAM_CLI_TELEMETRY := 0
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup model samples run test lint unit functional template-test clean

help:
	@echo "make run      start the local stack (moto S3+SQS, ingest worker, API on 127.0.0.1:$(PORT)) with sample photos"
	@echo "make test     lint, type-check and run every test"
	@echo "make model    build the model artifact ($(MODEL_DIR)) with WEIGHTS=$(WEIGHTS) (PREPROCESS=<name> for another input size)"
	@echo "make samples  fetch the sample photos into $(SAMPLES)"
	@echo "make bench    retrieval quality and speed on real images vs the seed's method (bench-quick: ~8 min)"
	@echo "make capacity the segmented index at N = 100,000 and 1,000,000 synthetic images (also in make bench; docs/scaling.md)"

# --- set-up -------------------------------------------------------------------------------
setup: $(VENV)/.installed browser

# The virtualenv runs Python >= 3.12, Lambda's version (infra/find_python.sh finds one, pyenv's included, or says
# what to install); one made with an older Python is replaced.
$(VENV)/.installed: requirements-dev.txt layers/deps/requirements.txt layers/deps/requirements-core.txt \
  layers/deps/requirements-api.txt layers/deps/constraints.txt layers/pictrace/pyproject.toml
	@if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then \
	  echo "$(VENV) runs Python $$($(PY) -c 'import platform; print(platform.python_version())'): replacing it with >= 3.12"; \
	  rm -rf $(VENV); fi
	@if [ ! -x $(PY) ]; then python=$$(bash infra/find_python.sh) || exit 1; \
	  echo "creating $(VENV) with $$python ($$($$python --version))"; $$python -m venv $(VENV); fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e layers/pictrace
	touch $@

# Debian's chromium for the browser test (tests/functional/test_web_page.py): Playwright (requirements-dev.txt)
# drives it; `playwright install` is never run. Idempotent: nothing to do once /usr/bin/chromium exists.
CHROMIUM ?= /usr/bin/chromium
.PHONY: browser
browser:
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "no $(CHROMIUM) and no apt-get: install Chromium for the browser test" >&2; exit 0; fi; \
	sudo=; if [ "$$(id -u)" != 0 ]; then sudo=sudo; fi; \
	echo "installing Debian's chromium for the browser test"; \
	$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium >/dev/null \
	  || echo "could not install chromium: the browser test will fail until $(CHROMIUM) exists" >&2

model: setup
	$(PY) infra/build_model.py --weights '$(WEIGHTS)' --out $(MODEL_DIR) $(if $(PREPROCESS),--preprocess '$(PREPROCESS)')

samples: setup
	bash infra/fetch_samples.sh $(SAMPLES) $(PY)

# --- the local stack ----------------------------------------------------------------------
run: setup model samples
	$(PY) -m infra.local run --samples $(SAMPLES)/photos --port $(PORT)

# --- checks -------------------------------------------------------------------------------
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/pictrace/pictrace infra
	$(VENV)/bin/mypy layers/deps/layer.py
	$(VENV)/bin/mypy functions/ingest/app.py
	$(VENV)/bin/mypy functions/search/app.py
	$(VENV)/bin/mypy functions/compact/app.py
	$(VENV)/bin/mypy functions/copies/app.py
	$(VENV)/bin/mypy functions/details/app.py
	$(VENV)/bin/mypy bench

test: setup model lint $(VENV)/.bench-installed  ## the bench's own tests need its requirements (tabulate, psutil, ...)
	$(PY) -m pytest tests

unit: setup model $(VENV)/.bench-installed
	$(PY) -m pytest tests/unit

functional: setup model
	$(PY) -m pytest tests/functional

template-test: setup
	$(PY) -m pytest tests/template

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache

# --- dependency audit (CI runs it after the tests) -------------------------------------------
.PHONY: audit
audit: setup
	$(VENV)/bin/pip-audit --progress-spinner off --vulnerability-service pypi $(foreach r,$(wildcard layers/deps/requirements*.txt),-r $(r))

# --- Lambda without Docker (issue 3) ----------------------------------------------------------------
# make invoke FN=<LogicalId> EVENT=<file>: the handler in-process as Lambda would run it (infra/invoke.py),
#   against a fresh local stack unless AWS_ENDPOINT_URL_S3 is set; PUT="key=file ..." uploads files first.
# make build [ARCH=arm64|x86_64]: sam build for that architecture (arm64 by default, as the template; the deps layers' ARCH and the template's
#   Architecture parameter must agree); deploy with the same: sam deploy --parameter-overrides Architecture=...
#   The layers' .pyc files are compiled by PYTHON, the virtualenv's (Lambda's version, 3.12).
# make sizes: the size budget (sam build for both architectures into a temp dir), with the table printed.
FN ?= SearchFunction
EVENT ?= events/apigw_health.json
PUT ?=
ARCH ?= arm64
.PHONY: invoke build sizes
invoke: setup model
	$(PY) -m infra.invoke $(FN) $(EVENT) $(foreach p,$(PUT),--put $(p))

build: setup model
	ARCH=$(ARCH) PYTHON=$(abspath $(PY)) $(VENV)/bin/sam build --parameter-overrides Architecture=$(ARCH)

sizes: setup model
	$(PY) -m pytest -s -q tests/template/test_sizes.py

# --- benchmarks (issue 4): quality and speed on real images against the seed's method ---------------
.PHONY: bench bench-quick bench-setup
bench-setup: setup model samples $(VENV)/.bench-installed

$(VENV)/.bench-installed: bench/requirements.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r bench/requirements.txt
	touch $@

bench: bench-setup      ## full run (~30 min): sscd, sscd-mobile, random:0, SSCD preprocessings side by side; bench/results.json, docs/benchmarks.md
	$(PY) -m bench.run

bench-quick: bench-setup  ## smaller N, fewer queries (~8 min); leaves docs/benchmarks.md alone
	$(PY) -m bench.run --quick

# --- capacity of the segmented index (issue 7; docs/scaling.md) ----------------------------------
.PHONY: capacity
capacity: setup $(VENV)/.bench-installed  ## ~4 min, ~20 GB of RAM and ~14 GB of disk at N = 1,000,000
	$(PY) -m bench.alone capacity --n 100000 1000000 --out build/capacity.json

# --- score fusion and the copy verdict (issues 5, 12): per model, fit the fusion weights, P(copy) and the threshold on
# half of a bench run's queries (build/bench/signals-*.json; a quick bench first if there is none), report on the
# other half, write layers/pictrace/pictrace/calibration.json
.PHONY: fit-fusion
fit-fusion: bench-setup
	$(PY) -m bench.fit_fusion
