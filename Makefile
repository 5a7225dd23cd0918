# One command to see it work, one to test it all. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.13.0
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONHASHSEED := 0
# `make test` workers (pytest-xdist); the time budgets are set on a 2-core machine. JOBS=0: one process.
JOBS ?= 2

.PHONY: setup demo test test-fast checks book mirror check lint clean gpu-report
.PHONY: html serve test-site site-diagrams

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU wheel first, so that the requirement `torch` below never pulls a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

## The main job.
demo: setup
	$(PY) -m t5edu demo --overwrite

## Drift and lint checks: the package matches the notebooks, student notebooks match their sources, ruff.
checks: setup
	$(PY) -m t5edu mirror --check
	$(PY) -m t5edu exercises generate --check
	$(PY) -m t5edu book --check-pairs
	$(PY) -m ruff check t5edu tests

## For someone changing one function: checks, unit and parity tests; no notebooks, demo, torchrun or kernels.
test-fast: checks
	$(PY) -m pytest tests -m "not slow" -n $(JOBS) --dist loadscope -p no:cacheprovider -q

## The whole test suite, as CI runs it: checks, every test (slow ones included), every notebook under strict nbval.
test: checks
	$(PY) -m pytest tests chapters exercises/src -n $(JOBS) --dist loadscope --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider -q --durations=15

## Re-execute notebooks (all, or NB=path) and refresh outputs, mirrors and student notebooks.
book: setup
	$(PY) -m t5edu book $(NB)

## On a CUDA machine: t5edu vs transformers, written to benchmarks/gpu/<device>.json (about 8 minutes on an H100).
gpu-report: setup
	$(PY) -m t5edu.authoring.gpu_report --out benchmarks/gpu

mirror: setup
	$(PY) -m t5edu mirror

lint: setup
	$(PY) -m ruff check t5edu tests

## The website edition of the book in build/html: rendered from the notebooks' committed outputs
## (nothing is executed), warnings are errors, and it works with the network off.
html: setup
	$(PY) site/site_build.py build/html

## Preview the website at http://127.0.0.1:8000/
serve: html
	$(PY) -m http.server --bind 127.0.0.1 --directory build/html 8000

## Build the website and open every page in headless Chromium (apt-get install -y chromium).
test-site: setup
	$(PY) -m pytest tests/test_site.py -p no:cacheprovider -q

## Re-render the mermaid diagrams of the README and notebooks as SVG for the website (needs npm, chromium).
site-diagrams: setup
	$(PY) site/site_diagrams.py

clean:
	rm -rf $(VENV) build *.egg-info
