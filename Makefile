# Two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint clean assets package firmware firmware-for-tests mutation firmware-mutation

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

# The check prints the one apt-get line for missing X11 libraries of Qt's xcb plugin and stops (Linux only).
run: $(STAMP)
	$(PY) packaging/check_qt_libs.py
	$(VENV)/bin/odlstudio

test: $(STAMP) lint firmware-for-tests
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -ra $(PYTEST_ARGS)

# Lint, format and type checks (configured in pyproject.toml; ruff and mypy pinned in the test extra).  Any
# finding fails it, and so `make test` and CI.  `ruff format .` and `ruff check --fix .` repair most of them.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m mypy

# The ODL firmware (firmware/Makefile): every target, warnings as errors, flash/RAM use printed.
# Needs gcc-arm-none-eabi and libnewlib-arm-none-eabi (the QEMU board also needs qemu-system-arm).
firmware:
	$(MAKE) -C firmware all

# What the tests need: the native builds always; the ARM builds when the cross compiler is installed
# (the firmware tests then run under QEMU; without it they skip, or fail with CI=true).
firmware-for-tests:
	@if command -v arm-none-eabi-gcc >/dev/null 2>&1; then $(MAKE) -s -C firmware all >/dev/null; \
	else $(MAKE) -s -C firmware host plugin >/dev/null; \
	echo "firmware: arm-none-eabi-gcc not found, QEMU board tests will skip (sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)"; fi

assets: $(STAMP)
	$(VENV)/bin/odlstudio make-assets

# Frozen one-folder app for this OS in dist/odlstudio/ (PyInstaller; see packaging/README.md).
package: $(STAMP)
	$(PY) -m pip install -q -e '.[package]'
	$(PY) packaging/build.py $(PACKAGE_ARGS)

# Mutation score per module of the code whose bugs cost data or trust (docs/benchmarks.md "Mutation
# testing"); CPU-heavy (about 2 h on 2 cores with MUTATION_ARGS=--jobs 2; estimator_firmware_memory runs the
# firmware under QEMU), so not part of `make test`.  MUTATION_ARGS: targets, --jobs, --report.
mutation: $(STAMP)
	$(PY) -m pip install -q -e '.[mutation]'
	QT_QPA_PLATFORM=offscreen nice $(PY) benchmarks/mutation.py $(MUTATION_ARGS)

# Planted bugs in the firmware's C core (benchmarks/firmware_mutation.py; docs/benchmarks.md "Firmware
# mutation"): a fixed sample of mutants per file, each built with ASan/UBSan and run against the native tests.
firmware-mutation: $(STAMP)
	nice $(PY) benchmarks/firmware_mutation.py $(FIRMWARE_MUTATION_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache firmware/build
