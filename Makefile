# Everything a fresh machine needs: python3, make and a C++ compiler. The venv, the build tools
# (cmake, ninja, pybind11 from PyPI) and the package are installed on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_OUT ?= demo_out

.PHONY: all install demo demo-quick test test-fast test-interpret bench clean FORCE

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The editable install maps each module file: a module added or removed since needs a reinstall.
# .modules holds the list and is rewritten only when it changes.
MODULES := $(shell find duiit_fast kernels -name '*.py' | LC_ALL=C sort)
$(VENV)/.modules: $(BIN)/python FORCE
	@echo "$(MODULES)" | cmp -s - $@ || echo "$(MODULES)" > $@

$(STAMP): $(BIN)/python $(VENV)/.modules pyproject.toml CMakeLists.txt $(wildcard csrc/*.cpp csrc/*.h)
	$(BIN)/pip install -q "torch>=2.6" torchvision "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja
	$(BIN)/pip install -q --no-build-isolation -e ".[test]"
	# DALI (optional, Linux x86-64 wheels only): the torch loader is used where it is missing.
	if [ "$$(uname -s)-$$(uname -m)" = "Linux-x86_64" ]; then \
	  $(BIN)/pip install -q "nvidia-dali-cuda130" || echo "DALI not installed: the torch loader will be used"; fi
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/duiit demo --out $(DEMO_OUT)

demo-quick: $(STAMP)
	$(BIN)/duiit demo --quick --out $(DEMO_OUT)

# The default tier, then the Triton interpreter tier in its own process (TRITON_INTERPRET must be
# set before any kernel is defined). pytest exits 5 when a tier selects no test: that is not a failure.
test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=12
	TRITON_INTERPRET=1 $(BIN)/python -m pytest -q -m interpret || [ $$? -eq 5 ]

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x

bench: $(STAMP)
	mkdir -p .benchmarks && cd bench && ../$(BIN)/python -m pytest -q --benchmark-only --benchmark-json=../.benchmarks/latest.json -p no:cacheprovider $(BENCH_ARGS)

clean:
	rm -rf build $(VENV) $(DEMO_OUT) .pytest_cache .benchmarks
