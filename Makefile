# The two commands: `make demo` (set up, train on the bundled clip, separate it
# with the shipped model)
# and `make test` (set up, run the tests). Both install what they need.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all ffmpeg

setup: ffmpeg $(STAMP)

ffmpeg:
	@command -v ffmpeg >/dev/null 2>&1 || { \
	  echo "installing ffmpeg"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq ffmpeg >/dev/null; }

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

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m ""
