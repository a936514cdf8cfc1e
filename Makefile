# Two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test clean assets package mutation

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)
	$(VENV)/bin/odlstudio

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -ra $(PYTEST_ARGS)

assets: $(STAMP)
	$(VENV)/bin/odlstudio make-assets

# Frozen one-folder app for this OS in dist/odlstudio/ (PyInstaller; see packaging/README.md).
package: $(STAMP)
	$(PY) -m pip install -q -e '.[package]'
	$(PY) packaging/build.py $(PACKAGE_ARGS)

# Mutation score per module of the code whose bugs cost data or trust (docs/benchmarks.md "Mutation
# testing"); CPU-heavy (about 30 min on 2 cores), so not part of `make test`.  MUTATION_ARGS: targets.
mutation: $(STAMP)
	$(PY) -m pip install -q -e '.[mutation]'
	QT_QPA_PLATFORM=offscreen nice $(PY) benchmarks/mutation.py $(MUTATION_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache
