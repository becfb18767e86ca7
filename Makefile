# Two commands do all set-up on a fresh machine (README): `make serve` and `make test`.
SHELL := bash
# Every install goes through constraints.txt (exact versions), so a new release on the package
# index cannot turn a fresh machine red; `make test-latest` tries the newest versions without it.
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
LATEST_VENV ?= .venv-latest

# Re-build the C++/CUDA core whenever its inputs change (only what changed recompiles).
CORE_INPUTS := pyproject.toml CMakeLists.txt constraints.txt scripts/install $(wildcard csrc/*)

.PHONY: serve test test-latest constraints bench install clean image image-test image-gpu

$(VENV)/.installed-run: $(CORE_INPUTS)
	scripts/install $(VENV) core
	touch $@

# The test, training, batch (Ray) and raw (camera RAW) extras on top of the same build: never a second build of the core.
$(VENV)/.installed-dev: $(VENV)/.installed-run
	scripts/install $(VENV) extras test train batch raw
	bash scripts/install-system-deps
	touch $@

install: $(VENV)/.installed-run

## The main job: the live service on its synthetic focus-sweep source, at http://$(HOST):$(PORT)/
serve: $(VENV)/.installed-run
	$(VENV)/bin/surgifuse serve --host $(HOST) --port $(PORT)

## The tests (what CI runs)
test: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_ARGS)

## The tests in a fresh venv with the newest versions the index serves (constraints.txt ignored):
## a coming break shows here before the constraints move (`make constraints` moves them).
test-latest:
	rm -rf $(LATEST_VENV)
	SURGIFUSE_LATEST=1 scripts/install $(LATEST_VENV) core
	SURGIFUSE_LATEST=1 scripts/install $(LATEST_VENV) extras test train batch raw
	bash scripts/install-system-deps
	@echo; echo "== versions that differ from constraints.txt"
	@$(LATEST_VENV)/bin/python -m pip freeze --all --exclude-editable | grep -v '^surgifuse' | sed 's/+[a-z0-9.]*$$//' \
	  | grep -vxF -f <(grep -v '^#' constraints.txt) || echo "(none)"
	$(LATEST_VENV)/bin/python -m pytest $(PYTEST_ARGS)

## Move the constraints to the versions of the last `make test-latest` (run it first; it must pass).
constraints:
	scripts/write-constraints $(LATEST_VENV)

bench: $(VENV)/.installed-dev
	$(VENV)/bin/surgifuse bench

## Container images (docs/deployment.md), not part of `make test`: the CPU image; the same, then run
## and checked from outside (/healthz, a fused frame on /ws/stream); the GPU image. Need root and
## podman (scripts/image installs it from apt when missing).
image:
	scripts/image build cpu

image-test:
	scripts/image test cpu

image-gpu:
	scripts/image build gpu

clean:
	rm -rf build $(VENV) $(LATEST_VENV)
