#!/usr/bin/env bash
# The whole test suite, against real Redis, Mosquitto, PostgreSQL and Chromium:
# once on SQLite (everything, browser tests included), once on PostgreSQL.
# Extra arguments go to both pytest runs (e.g. scripts/test.sh -k lifecycle).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_venv
ensure_redis
ensure_mosquitto
ensure_postgres
ensure_chromium
ensure_nginx

export FLEETGATE_TEST_POSTGRES_URL="${FLEETGATE_TEST_POSTGRES_URL:-$PG_URL_DEFAULT}"
say "Tests on SQLite"
env -u DATABASE_URL "$VENV/bin/pytest" "$@"
say "Tests on PostgreSQL ($FLEETGATE_TEST_POSTGRES_URL)"
# The gateway agent has no database; its tests ran once already.
DATABASE_URL="$FLEETGATE_TEST_POSTGRES_URL" "$VENV/bin/pytest" -m "not browser" --ignore=tests/gateway \
  -p no:cacheprovider "$@"
