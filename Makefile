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
# ReDoc for /docs/redoc, unpacked from the npm package (no PyPI package ships it without Django) into
# the path referral/api/docs.py reads. Optional: without it the set-up goes on and Swagger UI works.
NPM ?= npm
REDOC_VERSION := 2.5.4
# npm's `integrity` of the tarball (npm view redoc@2.5.4 dist.integrity): sha512, base64
REDOC_SHA512 := M6jWhG1qoBnH6TFmzJnstyCZ87HmOY/UzDm78mHiYihEdlV/YcS9ogOo1NlElnJMeLsyxHFe2yFc4sNjHTrABQ==
REDOC_DIR := $(VENV)/share/redoc
REDOC := $(REDOC_DIR)/.installed-$(REDOC_VERSION)

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
		if [ "$$found" = "$(PYTHON)" ]; then found=; else found=" ($$found)"; fi; \
		if [ -n "$$v" ]; then v="is Python $$v"; else v="does not run"; fi; \
		echo "make: needs Python 3.11 or newer, and '$(PYTHON)'$$found $$v. $$pick" >&2; exit 1; \
	fi; \
	$(if $(VENV_BROKEN),echo "make: rebuilding $(VENV): $(VENV_BROKEN)";) \
	echo "make: creating $(VENV) with $$found (Python $$v)"; \
	rm -rf $(VENV); \
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }
	@$(PIP_INSTALL) --upgrade pip || echo "make: pip not upgraded; going on with the one the venv has"

# A stamp is touched only when its install finished: an interrupted install is run again.
# PyICU (the password rules' look-alike letters) has no wheel: pip builds it against the system's ICU.
# Say what to install before pip fails half-way with a compiler error.
$(INSTALLED): requirements.txt $(VENV_CFG)
	@$(BIN)/python -c 'import icu' 2>/dev/null || pkg-config --exists icu-i18n 2>/dev/null || { \
		echo "make: PyICU builds against ICU, which is missing. Install it first:" >&2; \
		echo "  Debian/Ubuntu: sudo apt-get install libicu-dev pkg-config g++" >&2; \
		echo "  macOS: brew install icu4c pkg-config, then PKG_CONFIG_PATH=\$$(brew --prefix icu4c)/lib/pkgconfig" >&2; \
		exit 1; }
	$(PIP_INSTALL) -r requirements.txt
	touch $@

$(INSTALLED_DEV): requirements-dev.txt requirements.txt $(VENV_CFG)
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $(INSTALLED) $@

# Any failure prints one line, "ReDoc unavailable: <reason>; Swagger UI works", and the set-up goes on
# (and tries again next time). npm without retries and with a timeout, so that an unreachable registry
# costs seconds, not minutes.
$(REDOC): $(VENV_CFG)
	@tmp=$(REDOC_DIR)/tmp; tgz=$$tmp/redoc-$(REDOC_VERSION).tgz; why=; \
	rm -rf $$tmp && mkdir -p $$tmp || why="cannot write $(REDOC_DIR)"; \
	if [ -z "$$why" ] && ! command -v $(NPM) >/dev/null 2>&1; then why="npm not found"; fi; \
	if [ -z "$$why" ] && ! command -v openssl >/dev/null 2>&1; then why="openssl (to check its sha512) not found"; fi; \
	if [ -z "$$why" ]; then \
		(cd $$tmp && $(NPM) pack --loglevel=error --fetch-retries=0 --fetch-timeout=20000 \
			redoc@$(REDOC_VERSION) >/dev/null 2>npm.log); status=$$?; \
		if [ $$status -ne 0 ]; then \
			msg=$$(sed -n -e 's/^npm error //p' -e 's/^npm ERR! //p' $$tmp/npm.log \
				| grep -v -E '^(code|errno|syscall) |^ *$$' | head -n 1 | sed 's/\.$$//'); \
			why="npm pack redoc@$(REDOC_VERSION) failed: $${msg:-exit status $$status}"; \
		fi; \
	fi; \
	if [ -z "$$why" ] && [ "$$(openssl dgst -sha512 -binary $$tgz | openssl base64 -A)" != "$(REDOC_SHA512)" ]; then \
		why="redoc-$(REDOC_VERSION).tgz does not match its sha512"; fi; \
	if [ -z "$$why" ] && ! tar -xzf $$tgz -C $$tmp \
		package/bundles/redoc.standalone.js package/bundles/redoc.standalone.js.LICENSE.txt; then \
		why="cannot unpack redoc-$(REDOC_VERSION).tgz"; fi; \
	if [ -z "$$why" ]; then \
		mv -f $$tmp/package/bundles/redoc.standalone.js $$tmp/package/bundles/redoc.standalone.js.LICENSE.txt \
			$(REDOC_DIR)/ && rm -f $(REDOC_DIR)/.installed-* && touch $@ || why="cannot write $(REDOC_DIR)"; \
	fi; \
	rm -rf $$tmp; \
	if [ -n "$$why" ]; then echo "ReDoc unavailable: $$why; Swagger UI works"; fi

FORCE:

# `alembic upgrade head` prints nothing: then one line saying where the database is ("make: database at
# revision 0003 (head)"), from `alembic current`, so that a user sees it worked.
migrate: venv
	$(BIN)/alembic upgrade head
	@revision=$$($(BIN)/alembic current) && echo "make: database at revision $$revision"

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
