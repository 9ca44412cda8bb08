# Two commands do all the set-up on a fresh clone (README, Quick start):
#   make demo   the main job on the embedded default (SQLite, no servers)
#   make test   the whole test suite (starts MariaDB and Redis when they are down)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench install clean

$(STAMP): requirements.txt requirements-nodeps.txt requirements-optional.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(PY) demo.py

test: $(STAMP)
	bash tests/setup.sh
	$(PY) -m pytest -q

bench: $(STAMP)
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
