# The README's commands. Everything installs itself: uv (from PyPI), then the locked dependencies.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Django 6 needs Python 3.12+: bin/find-python probes PATH, then pyenv's versions.
PYTHON ?= $(shell bin/find-python)
UV ?= $(firstword $(shell command -v uv 2>/dev/null) $(wildcard $(HOME)/.local/bin/uv))
export UV_PYTHON := $(PYTHON)
export UV_PROJECT_ENVIRONMENT := .venv
VENV := .venv/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help install run test lint fmt bench deploy-check messages clean

help:
	@echo "make run     start the portal (SQLite, simulated gateway, embedded broker, demo data)"
	@echo "make test    run the whole test suite (PostgreSQL + Redis too when DATABASE_URL/REDIS_URL are set)"
	@echo "make lint    ruff + mypy + import-linter (the app layers, pyproject.toml)"
	@echo "make bench   page, sweep and search benchmarks"

install: .venv/.installed

.venv/.installed: pyproject.toml uv.lock
	@test -n "$(PYTHON)" || { echo "Python 3.12 or newer is needed (python3.13/python3.12 on PATH)"; exit 1; }
	@if [ -z "$(UV)" ]; then echo "Installing uv…"; "$(PYTHON)" -m pip install --quiet --user --root-user-action=ignore --disable-pip-version-check uv; fi
	$(or $(UV),$(HOME)/.local/bin/uv) sync --frozen
	@touch $@

run: install
	@bin/run-dev "$(HOST)" "$(PORT)"

test: install
	$(VENV)/pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy .
	$(VENV)/lint-imports --no-cache

fmt: install
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

bench: install
	$(VENV)/python bench/run.py $(BENCH_ARGS)

# Production settings must pass Django's deployment checks.
deploy-check: install
	DEBUG=0 SECRET_KEY=$$(openssl rand -hex 40) ALLOWED_HOSTS=billing.example EMAIL_HOST=smtp.billing.example \
		PAYMENT_GATEWAY=stripe STRIPE_SECRET_KEY=sk_live_x STRIPE_PUBLISHABLE_KEY=pk_live_x STRIPE_WEBHOOK_SECRET=whsec_x \
		$(VENV)/python manage.py check --deploy --fail-level WARNING

# One Dutch catalogue for the whole project (locale/); --ignore keeps app folders from growing their own.
messages: install
	$(VENV)/python manage.py makemessages -l nl --ignore=.venv --ignore=var --ignore=staticfiles --ignore='*/locale'
	$(VENV)/python manage.py compilemessages -l nl --ignore=.venv

clean:
	rm -rf .venv var/*.sqlite3* var/broker staticfiles test-results
