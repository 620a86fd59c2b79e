# The two commands of the README, and a few conveniences.
# Development runs with DEBUG on; the portal's own default is off (docs/security.md).
export DEBUG ?= true
.PHONY: demo test lint format bench bench-provision

demo:  ## set up (virtualenv, services, database, demo data) and run the demo
	bash scripts/demo.sh

test:  ## run the whole test suite on SQLite and PostgreSQL
	bash scripts/test.sh

lint:  ## ruff, then the import contracts (DESIGN.md's "who may import whom")
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/lint-imports

format:
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .

bench:  ## the widget, event-ingestion and enrollment benchmarks on a scratch SQLite database
	DATABASE_URL=sqlite:///$(CURDIR)/var/bench.sqlite3 .venv/bin/python manage.py migrate -v0
	DATABASE_URL=sqlite:///$(CURDIR)/var/bench.sqlite3 .venv/bin/python manage.py bench_widgets --devices 100000
	DATABASE_URL=sqlite:///$(CURDIR)/var/bench.sqlite3 .venv/bin/python manage.py bench_events --gateways 50 --seconds 20
	DATABASE_URL=sqlite:///$(CURDIR)/var/bench.sqlite3 .venv/bin/python manage.py bench_enroll --rows 10000 --gateways 20

bench-provision:  ## provisioning 10,000 devices end to end, on a scratch PostgreSQL database
	createdb -h 127.0.0.1 -U postgres fleetgate_bench 2>/dev/null || true
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/fleetgate_bench .venv/bin/python manage.py migrate -v0
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/fleetgate_bench .venv/bin/python manage.py bench_provision --devices 10000 --gateways 50
