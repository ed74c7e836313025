# One task runner for people and CI alike: `make` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
# uv installs exactly what uv.lock pins. One on PATH is used as is; otherwise this pinned
# version is bootstrapped into .tools/ with nothing but Python's own venv and pip.
UV_VERSION := 0.13.8
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
export UV_PYTHON_DOWNLOADS := never
# Trust the system's certificate store, as pip does, so package downloads also work behind
# a proxy whose root certificate is installed there (uv's bundled roots would refuse it).
export UV_SYSTEM_CERTS := 1
PYTEST_ARGS ?=

.PHONY: help runtime install migrate revision serve dev serve-gevent test lint typecheck check rollout rollback bench bench-instructions lock settings-docs update rename clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# Two installs from the one lock file. Serving needs the runtime dependencies alone;
# testing, linting and type checking add the development group and every extra. The
# runtime sync is --inexact, so serving after testing removes nothing testing installed.
$(VENV)/.runtime: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --no-dev --inexact --python "$(PYTHON)"
	@touch $@

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --all-extras --python "$(PYTHON)"
	@touch $@ $(VENV)/.runtime

runtime: $(VENV)/.runtime ## Create .venv with the runtime dependencies only (what serving needs)

install: $(VENV)/.synced ## Create .venv from uv.lock (runtime and dev dependencies, every extra)

# Every setting is validated first, in one line each, before anything slow runs.
migrate: runtime ## Apply database migrations (alembic upgrade heads)
	$(VENV)/bin/python -m chassis.settings
	$(VENV)/bin/alembic upgrade heads

revision: install migrate ## Write a migration from model changes: make revision m="add widgets"
	@test -n "$(m)" || { echo 'usage: make revision m="what changed"'; exit 2; }
	@# On the service's branch (label "service"); its first revision starts the branch. The
	@# database was migrated first: autogenerate compares the models with an up-to-date one.
	if $(VENV)/bin/alembic heads | grep -q '(service)'; then \
	  $(VENV)/bin/alembic revision --autogenerate -m "$(m)" --head service@head; \
	else \
	  $(VENV)/bin/alembic revision --autogenerate -m "$(m)" --head base --branch-label service \
	    --version-path migrations/versions; \
	fi

serve: migrate ## Migrate, then serve http://127.0.0.1:8000 (embedded SQLite, no other service)
	$(VENV)/bin/gunicorn -c gunicorn.conf.py

# APP_ENV=development unless set: for this target (and the migration before it) only.
dev: export APP_ENV ?= development
dev: migrate ## Migrate, then serve on loopback, reloading on every change (werkzeug)
	$(VENV)/bin/python -m chassis.serving.devserver

# One gevent worker, never recycled: one process keeping state in memory (docs/serving.md).
# Set for this target (and the migration before it) whatever the environment says, on purpose.
# app=module:variable serves another app than gunicorn.conf.py's wsgi_app.
serve-gevent: export GUNICORN_WORKER_CLASS = gevent
serve-gevent: export WEB_CONCURRENCY = 1
serve-gevent: export GUNICORN_MAX_REQUESTS = 0
serve-gevent: export GUNICORN_MAX_REQUESTS_JITTER = 0
serve-gevent: migrate ## Migrate, then serve with one gevent worker: one process keeping state, never recycled
	$(VENV)/bin/gunicorn -c gunicorn.conf.py $(app)

test: install ## Run the whole test suite (PostgreSQL and nginx tests skip if absent)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Apart from `make test`: coverage.py's tracer slows every test (docs/development.md).
# What it measures and how it reports: [tool.coverage] in pyproject.toml.
.PHONY: coverage
coverage: install ## The tests under coverage.py, then its report for app/ and chassis/ (PYTEST_ARGS as for test)
	$(VENV)/bin/coverage run -m pytest $(PYTEST_ARGS)
	$(VENV)/bin/coverage report

lint: install ## ruff: lint and formatting
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# What `make lint` checks, fixed: the same two commands on the same paths, each told to fix.
.PHONY: format
format: install ## ruff: fix what lint reports (what it can), then format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: install ## mypy --strict on app/, chassis/, harness/, tests/, bench/, the scripts and gunicorn.conf.py
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy deploy/compose/rollout
	$(VENV)/bin/mypy deploy/swarm/rollout

check: lint typecheck test ## Everything CI runs after provisioning services

rollout: ## compose: build, migrate, then switch to the new app with no request dropped
	deploy/compose/rollout

rollback: ## compose: switch back to the image the last rollout replaced
	deploy/compose/rollout --rollback

bench: install ## Throughput, memory and cold start on 127.0.0.1, drawn to docs/bench.png (needs wrk; nginx and PostgreSQL for their rows)
	$(VENV)/bin/python bench/run.py

bench-instructions: install ## Instructions per request, kit against bare Flask (needs valgrind; minutes)
	$(VENV)/bin/python bench/instructions.py

settings-docs: install ## Rewrite .env.example and the README's table from chassis/settings/declarations.py
	$(VENV)/bin/python -m template.settings_docs

update: install ## Take the template's changes (copier update), then name any conflicted file
	$(VENV)/bin/python template/update.py $(args)

rename: ## Rename the service everywhere: make rename name=orders-api
	@test -n "$(name)" || { echo 'usage: make rename name=orders-api'; exit 2; }
	$(PYTHON) template/rename.py "$(name)"

# The example's table is taken down first, where DATABASE_URL's database has it (docs/resources.md).
.PHONY: remove-example resource
remove-example: install ## Delete the example resource (/api/items) and take its table down
	$(VENV)/bin/python -m template.remove_example

resource: install ## Add a resource (model, views, migration, tests): make resource name=widgets
	@test -n "$(name)" || { echo 'usage: make resource name=widgets [singular=widget]'; exit 2; }
	$(VENV)/bin/python -m template.resource "$(name)" $(if $(singular),--singular "$(singular)")

lock: | $(UV) ## Re-resolve uv.lock after editing pyproject.toml
	$(UV) lock

# uv.lock's version of each dependency pyproject.toml names, where a newer one is released
# (uv asks the index); `uv lock --upgrade-package NAME` takes it, within pyproject's range.
.PHONY: outdated
outdated: | $(UV) ## List the direct dependencies with a newer release (needs the network)
	@set -o pipefail; $(UV) tree --outdated --depth 1 --locked \
	  | { grep -F '(latest:' || echo 'Every direct dependency is at its latest release.'; }

clean: ## Remove the virtual environments and caches
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
