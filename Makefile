# hallo3-gate: `make demo` and `make test` are the two commands a newcomer needs (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := ffmpeg espeak-ng sox chromium poppler-utils libgl1 libglib2.0-0 \
                libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core
PYTEST_ARGS ?=

.PHONY: install system-deps test lint demo bench clean

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

## install: the virtualenv with every Python dependency (CPU torch first, so nothing pulls a CUDA build)
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all,dev]"
	# syncnet-python is the Sync-C/D parity reference; its declared deps (torchvision, opencv-contrib) would replace
	# the CPU torch and clash with opencv-python, and it needs none of them for what the tests call.
	$(PY) -m pip install -q --no-deps syncnet-python==0.2.3
	touch $(STAMP)

install: system-deps $(STAMP)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# One BLAS/OpenMP thread per pytest worker: two workers on two cores, no oversubscription.
THREADS := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

test: install
	$(PY) -m ruff check .
	$(THREADS) $(PY) -m pytest -n 2 $(PYTEST_ARGS)

bench: install
	$(PY) -m benchmarks

demo: install
	$(VENV)/bin/hallo3-gate demo --out demo-out

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo-out
