# Two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test clean assets package

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

# The check prints the one apt-get line for missing X11 libraries of Qt's xcb plugin and stops (Linux only).
run: $(STAMP)
	$(PY) packaging/check_qt_libs.py
	$(VENV)/bin/odlstudio

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -ra $(PYTEST_ARGS)

assets: $(STAMP)
	$(VENV)/bin/odlstudio make-assets

# Frozen one-folder app for this OS in dist/odlstudio/ (PyInstaller; see packaging/README.md).
package: $(STAMP)
	$(PY) -m pip install -q -e '.[package]'
	$(PY) packaging/build.py $(PACKAGE_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache
