# The two commands of the README, and a few conveniences.
.PHONY: demo test lint format bench

demo:  ## set up (virtualenv, services, database, demo data) and run the demo
	bash scripts/demo.sh

test:  ## run the whole test suite on SQLite and PostgreSQL
	bash scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format:
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .

bench:  ## the widget and event-ingestion benchmarks on a scratch SQLite database
	DATABASE_URL=sqlite:///$(CURDIR)/var/bench.sqlite3 .venv/bin/python manage.py migrate -v0
	DATABASE_URL=sqlite:///$(CURDIR)/var/bench.sqlite3 .venv/bin/python manage.py bench_widgets --devices 100000
	DATABASE_URL=sqlite:///$(CURDIR)/var/bench.sqlite3 .venv/bin/python manage.py bench_events --gateways 50 --seconds 20
