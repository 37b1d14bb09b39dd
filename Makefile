# Two commands on a fresh machine: `make refers-run` (serve on SQLite, no .env needed) and `make test`.
# `make venv` / `make refers-run` install requirements.txt, the runtime alone; `make test`, `lint`,
# `format` and `bench` add requirements-dev.txt (tests, lint, fuzzing, browser test, benchmark).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-requirements
INSTALLED_DEV := $(VENV)/.installed-dev
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# ReDoc for /docs/redoc, unpacked from the npm package (no PyPI package ships it without Django).
REDOC_VERSION := 2.5.4
REDOC_SHA512 := M6jWhG1qoBnH6TFmzJnstyCZ87HmOY/UzDm78mHiYihEdlV/YcS9ogOo1NlElnJMeLsyxHFe2yFc4sNjHTrABQ==
REDOC := $(VENV)/share/redoc/.installed-$(REDOC_VERSION)

.PHONY: venv venv-dev migrate refers-run run test lint format bench

venv: $(INSTALLED) $(REDOC)

venv-dev: $(INSTALLED_DEV) $(REDOC)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# A stamp is touched only when its install finished: an interrupted install is run again.
$(INSTALLED): requirements.txt | $(BIN)/python
	$(PIP_INSTALL) -r requirements.txt
	touch $@

$(INSTALLED_DEV): requirements-dev.txt requirements.txt | $(BIN)/python
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $(INSTALLED) $@

$(REDOC): | $(BIN)/python
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
