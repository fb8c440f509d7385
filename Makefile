# Two commands do all set-up on a fresh clone: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install browser clean

# --no-cache-dir: a fresh machine's disk can be small (a CI run once failed with 'No space left on device'
# while pip installed torch); pip's wheel cache would hold a second copy of every package.
$(STAMP): pyproject.toml requirements.lock requirements-assets.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --no-cache-dir torch==2.13.0
	$(BIN)/pip install -q --no-cache-dir -c requirements.lock -e '.[dev]'
	$(BIN)/pip install -q --no-cache-dir --no-deps -r requirements-assets.txt
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lmforge quickstart

# Headless Chromium renders the HTML reports and drives the dashboard (lmforge ui) in tests, through
# chromedriver (Debian packages chromium + chromium-driver; needs root to install).
browser:
	@{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } && \
	  command -v chromedriver >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	    else echo "note: install Debian's chromium and chromium-driver for the browser tests (apt-get install chromium chromium-driver)"; fi; }

test: $(STAMP) browser
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest tests

clean:
	rm -rf $(VENV)
