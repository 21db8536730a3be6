# hallo3-gate: `make demo` and `make test` are the two commands a newcomer needs (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0
TORCH_FIND_LINKS ?= /opt/wheels
LOCK := requirements/lock.txt
LOCKS := requirements/build.txt $(LOCK) requirements/nodeps.txt
PIP_CHECK_EXPECTED := ^(No broken requirements found\.|syncnet-python 0\.2\.3 requires (torchvision|opencv-contrib-python),)
UV_VERSION := 0.13.9
LOCK_TOOL := build/lock-tool
UV := $(LOCK_TOOL)/bin/uv
UV_COMPILE := $(UV) pip compile --quiet --no-config --index-url https://pypi.org/simple --python-version 3.11 \
              --python-platform x86_64-manylinux_2_28 --generate-hashes --custom-compile-command "make lock"
APT_PACKAGES := ffmpeg espeak-ng sox chromium poppler-utils libgl1 libglib2.0-0 \
                libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core fonts-noto-cjk postgresql
PYTEST_ARGS ?=
LOCK_ARGS ?=

.PHONY: install lock system-deps test test-slow lint demo bench clean

## system-deps: Debian packages (ffmpeg, espeak-ng, chromium, poppler, pango for WeasyPrint ...)
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

## install: the virtualenv, built only from the hashed lock files under requirements/ (see `make lock`).
# torch is the one package pinned by version instead of hash: the CPU build (TORCH_VERSION) comes from this machine's
# local wheel directory (pip's find-links), and it goes in first with --no-deps so nothing pulls a CUDA build.
# Everything else is installed --no-deps from the lock (which is complete), so no resolver step can float a version;
# `pip check` then proves the set is consistent. syncnet-python (requirements/nodeps.txt) is the Sync-C/D parity
# reference; its declared deps (torchvision, opencv-contrib) would replace the CPU torch and clash with opencv-python,
# and it needs none of them for what the tests call: those two unmet requirements are the only ones pip check may report.
$(STAMP): pyproject.toml $(LOCKS)
	python3 -m venv $(VENV)
	$(PIP) install -q --require-hashes --no-deps -r requirements/build.txt
	$(PIP) install -q --no-deps torch==$(TORCH_VERSION)
	$(PIP) install -q --require-hashes --no-deps --no-build-isolation -r $(LOCK) -r requirements/nodeps.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	@$(PIP) check > $(VENV)/pip-check.txt || true; \
	unexpected=$$(grep -v -E "$(PIP_CHECK_EXPECTED)" $(VENV)/pip-check.txt || true); \
	if [ -n "$$unexpected" ]; then echo "pip check: $$unexpected (after changing pyproject.toml, run make lock)" >&2; exit 1; fi
	touch $(STAMP)

install: system-deps $(STAMP)

## lock: re-resolve every Python dependency (pyproject.toml [all,dev] + build tools) to exact versions with sha256
## hashes from PyPI, with uv (itself pinned) in build/lock-tool. torch's dependency set is resolved from the CPU
## wheel's metadata (TORCH_FIND_LINKS); torch itself and any CUDA-only package are kept out of the lock.
lock:
	@[ -x $(UV) ] && $(UV) --version | grep -qx "uv $(UV_VERSION)" || \
	  { python3 -m venv $(LOCK_TOOL) && $(LOCK_TOOL)/bin/pip install -q uv==$(UV_VERSION); }
	mkdir -p build && echo "torch==$(TORCH_VERSION)+cpu" > build/torch-cpu.txt
	$(UV_COMPILE) pyproject.toml requirements/build.in --extra all --extra dev --find-links $(TORCH_FIND_LINKS) \
	  --constraints build/torch-cpu.txt --no-emit-package torch $(LOCK_ARGS) -o $(LOCK)
	$(UV_COMPILE) requirements/build.in --constraints $(LOCK) -o requirements/build.txt
	$(UV_COMPILE) requirements/nodeps.in --no-deps -o requirements/nodeps.txt
	@if grep -n -i -E "^(torch|torchvision|torchaudio|triton)==|^nvidia-" $(LOCKS); then echo "lock: a CUDA/torch package got in" >&2; exit 1; fi

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# One BLAS/OpenMP thread per pytest worker: two workers on two cores, no oversubscription.
THREADS := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

# `make test`: ruff + every test not marked slow or browser (a few minutes on 2 cores); `make test-slow`: the slow ones
# (crash kills at every stage, a full disk at every write, PostgreSQL with concurrent gate runs, the Chromium tests).
# CI (.ci/run) runs both.
FAST := not slow and not browser

test: install
	$(PY) -m ruff check .
	$(THREADS) $(PY) -m pytest -n 2 -m "$(FAST)" $(PYTEST_ARGS)

test-slow: install
	$(THREADS) $(PY) -m pytest -n 2 -m "not ($(FAST))" $(PYTEST_ARGS)

bench: install
	$(PY) -m benchmarks

demo: install
	$(VENV)/bin/hallo3-gate demo --out demo-out

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo-out $(LOCK_TOOL)
