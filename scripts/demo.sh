#!/usr/bin/env bash
# Set up everything and run the demo on http://127.0.0.1:8000: the portal, an RQ worker,
# the reconciler, the MQTT bridge and simulated gateways.
# Ctrl-C stops every process this script started.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
HOST="${FLEETGATE_HOST:-127.0.0.1}"
PORT="${FLEETGATE_PORT:-8000}"
PASSWORD="${FLEETGATE_DEMO_PASSWORD:-fleetgate-demo}"
# The demo runs with DEBUG on (its default is off: production never runs the demo keys).
export DEBUG="${DEBUG:-true}"

ensure_venv
ensure_redis
ensure_mosquitto
"$PY" manage.py preflight --require redis,mqtt
say "Migrating the database"
"$PY" manage.py migrate --no-input -v0
say "Seeding the demo organization"
"$PY" manage.py seed_demo --password "$PASSWORD" | tee var/demo-logins.txt

mkdir -p var/log
pids=()
start() {  # start NAME COMMAND...: run in the background, log to var/log/NAME.log
  local name=$1; shift
  "$@" >"var/log/$name.log" 2>&1 &
  pids+=($!)
  say "Started $name (pid $!, log var/log/$name.log)"
}
stop_all() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop_all EXIT INT TERM

"$PY" manage.py gateway_secrets --organization demo --out var/sim-secrets.json
# The simulated devices' labels (serial, access key), for trying batch enrollment.
"$PY" manage.py simulated_keys --organization demo --devices 20 --out var/demo-enroll.csv
start portal "$PY" manage.py runserver "$HOST:$PORT" --noreload
start worker "$PY" manage.py rqworker default --worker-class rq.worker.SimpleWorker
start reconciler "$PY" manage.py run_reconciler
start bridge "$PY" manage.py run_bridge --client-id fleetgate-demo-bridge
# The demo organization's gateways, simulated: their devices show up as discovered and
# send a trickle of events, so the widgets change live.
start gateways "$PY" -m gateway simulate --secrets var/sim-secrets.json --devices 20 \
  --events-per-s 2 --latency-ms 300 --state-dir var/gateway-sim

wait_port "$PORT" "The portal"
cat <<MSG

  Fleetgate is running: http://$HOST:$PORT/
  Log in with any user printed above (password: $PASSWORD).
  Support staff: http://$HOST:$PORT/admin/ as "support".
  To try batch enrollment, import var/demo-enroll.csv (log in as "admin" or "enroller").
  Press Ctrl-C to stop.

MSG
wait -n "${pids[@]}"
say "A process exited; stopping the demo (see var/log/)."
