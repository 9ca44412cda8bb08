# Two commands do all the set-up on a fresh clone (README, Quick start):
#   make demo   the main job on the embedded default (SQLite, no servers)
#   make test   the whole test suite (starts MariaDB and Redis when they are down)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := -m pip install -q --disable-pip-version-check
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev
# What a Raspberry Pi installs (requirements.txt only), apart from the dev venv:
# the benches time cron runs in it.  ccxt's cryptography, in the dev venv, is
# imported by PyMySQL and would add 12 MiB to every run measured.
RUNTIME := .venv-runtime

.PHONY: demo test bench install clean

# The runtime: what `make demo` and a Pi need.
$(STAMP): requirements.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) $(PIP) -r requirements.txt
	$(PY) $(PIP) --no-deps -r requirements-nodeps.txt
	touch $@

# Tests and benches, on top of it.
$(DEV): $(STAMP) requirements-optional.txt requirements-dev.txt
	$(PY) $(PIP) -r requirements-dev.txt
	touch $@

$(RUNTIME)/.installed: requirements.txt requirements-nodeps.txt
	rm -rf $(RUNTIME)  # anew: nothing the requirements dropped may linger
	$(PYTHON) -m venv $(RUNTIME)
	$(RUNTIME)/bin/python $(PIP) -r requirements.txt
	$(RUNTIME)/bin/python $(PIP) --no-deps -r requirements-nodeps.txt
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(PY) demo.py

test: $(DEV)
	bash tests/setup.sh
	$(PY) -m pytest -q

bench: $(DEV) $(RUNTIME)/.installed
	bash tests/setup.sh
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(RUNTIME) .pytest_cache
