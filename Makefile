# Two commands do all set-up on a fresh machine (README): `make serve` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

# Re-install (and so rebuild the C++/CUDA core) whenever the build inputs change.
CORE_INPUTS := pyproject.toml CMakeLists.txt $(wildcard csrc/*)

.PHONY: serve test bench install clean

$(VENV)/.installed-run: $(CORE_INPUTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(CORE_INPUTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,train]'
	bash scripts/install-system-deps
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run

## The main job: the live service on its synthetic focus-sweep source, at http://$(HOST):$(PORT)/
serve: $(VENV)/.installed-run
	$(VENV)/bin/surgifuse serve --host $(HOST) --port $(PORT)

## The tests (what CI runs)
test: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	$(VENV)/bin/surgifuse bench

clean:
	rm -rf build $(VENV)
