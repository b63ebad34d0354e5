# The two commands: `make demo` (set up, train on the bundled clip, separate it
# with the shipped model)
# and `make test` (set up, run the tests; also installs chromium for the web
# page's browser test). Both install what they need.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all ffmpeg chromium

setup: ffmpeg $(STAMP)

ffmpeg:
	@command -v ffmpeg >/dev/null 2>&1 || { \
	  echo "installing ffmpeg"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq ffmpeg >/dev/null; }

# For the web page's browser test, which is skipped (saying why) where this fails.
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  echo "installing chromium and chromium-driver (for the web page's browser test)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  { $$SUDO apt-get update -qq && \
	    $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "chromium could not be installed: the browser test will be skipped"; }

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# Trains on the bundled clip (a demonstration: 4.5 s of one song teach no voice),
# then separates that clip with the shipped model, trained on MIR-1K.
demo: setup
	$(PY) train.py
	$(PY) separate.py --plot \
	  "$$($(PY) -c 'import stempeg; print(stempeg.example_stem_path())')"

test: setup chromium
	$(PY) -m pytest -q

test-all: setup chromium
	$(PY) -m pytest -q -m ""
