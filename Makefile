# Two commands on a fresh machine: `make refers-run` (serve on SQLite, no .env needed) and `make test`.
# `make venv` / `make refers-run` install requirements.txt, the runtime alone; `make test`, `lint`,
# `format` and `bench` add requirements-dev.txt (tests, lint, fuzzing, browser test, benchmark).
# Needs Python 3.11 or newer: `make PYTHON=python3.12 ...` picks another than `python3`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENV_CFG := $(VENV)/pyvenv.cfg
INSTALLED := $(VENV)/.installed-requirements
INSTALLED_DEV := $(VENV)/.installed-dev
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# ReDoc for /docs/redoc, unpacked from the npm package (no PyPI package ships it without Django).
REDOC_VERSION := 2.5.4
REDOC_SHA512 := M6jWhG1qoBnH6TFmzJnstyCZ87HmOY/UzDm78mHiYihEdlV/YcS9ogOo1NlElnJMeLsyxHFe2yFc4sNjHTrABQ==
REDOC := $(VENV)/share/redoc/.installed-$(REDOC_VERSION)

# Print the version ("3.11.7") of the python running them; fail when it is older than 3.11 (or, in the
# venv, has no pip: an interrupted `python -m venv`).
PY_CHECK := import sys; print("%d.%d.%d" % sys.version_info[:3]); sys.exit(sys.version_info < (3, 11))
VENV_CHECK := import sys, pip; $(PY_CHECK)
# Why an existing venv cannot be used (empty when it can): it is then rebuilt, not reused.
VENV_BROKEN := $(shell \
	if [ -e $(VENV) ]; then \
		if [ ! -f $(VENV_CFG) ]; then echo "it has no pyvenv.cfg"; \
		elif ! v=$$($(BIN)/python -c '$(VENV_CHECK)' 2>/dev/null); then \
			if [ -n "$$v" ]; then echo "it was made by Python $$v"; else echo "its python does not run or has no pip"; fi; \
		fi; \
	fi)

GOALS := $(or $(MAKECMDGOALS),venv)

.PHONY: venv venv-dev migrate refers-run run test lint format bench FORCE

venv: $(INSTALLED) $(REDOC)

venv-dev: $(INSTALLED_DEV) $(REDOC)

# The venv itself, after checking the Python that makes it. Then a current pip, which resolves in a
# fraction of the time of the one ensurepip bundles (optional: the bundled one works too).
$(VENV_CFG): $(if $(VENV_BROKEN),FORCE)
	@pick="Pick another with PYTHON=, for example: make PYTHON=python3.12 $(GOALS)"; \
	if ! found=$$(command -v $(PYTHON) 2>/dev/null); then \
		echo "make: needs Python 3.11 or newer, and '$(PYTHON)' is not found. $$pick" >&2; exit 1; \
	elif ! v=$$($(PYTHON) -c '$(PY_CHECK)' 2>/dev/null); then \
		if [ -n "$$v" ]; then v="Python $$v"; else v="which does not run"; fi; \
		echo "make: needs Python 3.11 or newer, and '$(PYTHON)' is $$found, $$v. $$pick" >&2; exit 1; \
	fi; \
	$(if $(VENV_BROKEN),echo "make: rebuilding $(VENV): $(VENV_BROKEN)";) \
	echo "make: creating $(VENV) with $$found (Python $$v)"; \
	rm -rf $(VENV); \
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }
	@$(PIP_INSTALL) --upgrade pip || echo "make: pip not upgraded; going on with the one the venv has"

# A stamp is touched only when its install finished: an interrupted install is run again.
$(INSTALLED): requirements.txt $(VENV_CFG)
	$(PIP_INSTALL) -r requirements.txt
	touch $@

$(INSTALLED_DEV): requirements-dev.txt requirements.txt $(VENV_CFG)
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $(INSTALLED) $@

$(REDOC): $(VENV_CFG)
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "note: npm not found, so /docs/redoc has no ReDoc (Swagger UI at /docs/swagger works)"; \
	else \
		rm -rf $(@D) && mkdir -p $(@D)/tmp && \
		(cd $(@D)/tmp && npm pack --silent redoc@$(REDOC_VERSION) >/dev/null) && \
		test "$$(openssl dgst -sha512 -binary $(@D)/tmp/redoc-$(REDOC_VERSION).tgz | base64 -w0)" = "$(REDOC_SHA512)" && \
		tar -xzf $(@D)/tmp/redoc-$(REDOC_VERSION).tgz -C $(@D) --strip-components=2 \
			package/bundles/redoc.standalone.js package/bundles/redoc.standalone.js.LICENSE.txt && \
		rm -rf $(@D)/tmp && touch $@; \
	fi

FORCE:

migrate: venv
	$(BIN)/alembic upgrade head

refers-run: migrate
	$(BIN)/python -m referral

run: refers-run

test: venv-dev
	$(BIN)/python -m pytest $(ARGS)

lint: venv-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Throughput, latency, scale and memory against a bare-Sanic ceiling (see bench/RESULTS.md):
# `make bench` on SQLite, `make bench ARGS=--pg` on PostgreSQL, `ARGS="--users 1000000"`, `ARGS=--help`.
bench: venv-dev
	$(BIN)/python -m bench $(ARGS)
