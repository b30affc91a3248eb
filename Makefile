# One command runs the marketplace, one runs the tests. Both create the virtualenv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv lint format check typecheck seed bench oversell clean production messages

$(STAMP): requirements.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

run: venv ## migrate, load demo data, start web + Celery worker + beat
	bash scripts/run.sh

production: venv ## the production profile: gunicorn web processes, Celery workers by queue, beat (docs/deployment.md)
	bash scripts/production.sh

test: venv ## the whole suite (SQLite by default; Postgres/Redis when DATABASE_URL/REDIS_URL are set)
	$(BIN)/pytest $(ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

check: venv
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python manage.py check

typecheck: venv ## mypy over the domain layers of docs/architecture.md (files listed in pyproject.toml) and the client
	$(BIN)/mypy
	$(BIN)/mypy client/marketplace_client

messages: venv ## regenerate the zh-Hans catalogue from the code and templates, then compile it (translate new entries in locale/)
	$(BIN)/python manage.py makemessages -l zh_Hans --ignore=.venv --ignore=client --ignore=agent --ignore=bench --ignore=tests --ignore=staticfiles --ignore=var
	$(BIN)/python manage.py compilemessages --ignore=.venv

seed: venv
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo

bench: venv ## offer search, quotes and orders on a generated market (see BENCHMARKS.md)
	$(BIN)/python bench/market.py $(ARGS)

oversell: venv ## buyers race over HTTP for the last slots, against gunicorn and PostgreSQL (see RELIABILITY.md)
	$(BIN)/python bench/oversell.py $(ARGS)

clean:
	rm -rf $(VENV) var db.sqlite3 staticfiles .mypy_cache
