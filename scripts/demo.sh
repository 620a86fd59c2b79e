#!/usr/bin/env bash
# Set up everything and run the demo on http://127.0.0.1:8000: the portal, an RQ worker,
# the reconciler, the MQTT bridge and the demo fleet's simulated gateways.
# Ctrl-C stops every process this script started (the gateways first, so the bridge
# records them offline) and ends with status 0.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
HOST="${FLEETGATE_HOST:-127.0.0.1}"
PORT="${FLEETGATE_PORT:-8000}"
PASSWORD="${FLEETGATE_DEMO_PASSWORD:-fleetgate-demo}"
# The demo runs with DEBUG on (its default is off: production never runs the demo keys).
export DEBUG="${DEBUG:-true}"

ensure_venv
ensure_redis
ensure_mosquitto_installed
"$PY" manage.py preflight --require redis
mkdir -p var/log

# The portal's demo devices and the simulated gateways' devices are one fleet
# (gateway/fleet.py), each side keeping its own state: a database from an older fleet,
# or gateway state without the database it belongs to, would disagree with the other.
FLEET_VERSION="$("$PY" -c 'from gateway.fleet import VERSION; print(VERSION)')"
if [ -z "${DATABASE_URL:-}" ]; then
  if [ -f var/fleetgate.sqlite3 ] && [ "$(cat var/demo-fleet-version 2>/dev/null)" != "$FLEET_VERSION" ]; then
    backup="var/fleetgate.sqlite3.before-fleet-$FLEET_VERSION"
    say "The demo database predates this demo fleet: keeping it as $backup and starting afresh"
    mv var/fleetgate.sqlite3 "$backup"
    rm -f var/fleetgate.sqlite3-wal var/fleetgate.sqlite3-shm
  fi
  [ -f var/fleetgate.sqlite3 ] || rm -rf var/gateway-sim
fi
say "Migrating the database"
"$PY" manage.py migrate --no-input -v0
say "Seeding the demo organizations"
"$PY" manage.py seed_demo --password "$PASSWORD" | tee var/demo-logins.txt
echo "$FLEET_VERSION" >var/demo-fleet-version

names=()
pids=()
start() {  # start NAME COMMAND...: run in the background, log to var/log/NAME.log
  local name=$1; shift
  "$@" </dev/null >"var/log/$name.log" 2>&1 &
  names+=("$name")
  pids+=($!)
  say "Started $name (pid $!, log var/log/$name.log)"
}
stop() {  # stop PID...: SIGTERM, then wait for them
  kill "$@" 2>/dev/null || true
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}
stop_all() {
  trap '' INT TERM HUP
  [ "${#pids[@]}" -gt 0 ] || return 0
  say "Stopping the demo"
  # The gateways first: they say goodbye (offline) while the bridge still listens;
  # the broker last, so nobody loses it on the way out.
  local i rest=() broker=()
  for i in "${!names[@]}"; do [ "${names[$i]}" != gateways ] || stop "${pids[$i]}"; done
  for i in "${!names[@]}"; do
    if [ "${names[$i]}" = mosquitto ]; then broker+=("${pids[$i]}"); else rest+=("${pids[$i]}"); fi
  done
  [ "${#rest[@]}" -eq 0 ] || stop "${rest[@]}"
  [ "${#broker[@]}" -eq 0 ] || stop "${broker[@]}"
  pids=()
}
interrupted() { stop_all; exit 0; }
trap stop_all EXIT
trap interrupted INT TERM HUP
# Every process in a process group of its own: Ctrl-C reaches this script alone, which
# stops them in order (above) rather than all at once.
set -m

# The demo's own broker with accounts: each simulated gateway gets a broker password.
"$PY" manage.py gateway_secrets --organization demo other --out var/sim-secrets.json \
  --broker-passwords
demo_broker_config
start mosquitto "$MOSQUITTO" -c var/mosquitto/mosquitto.conf
wait_port "$DEMO_MQTT_PORT" "The demo's Mosquitto"
"$PY" manage.py preflight --require mqtt
# The labels of the gateways' new, unenrolled devices, for trying batch enrollment.
"$PY" manage.py simulated_keys --organization demo --out var/demo-enroll.csv
start portal "$PY" manage.py runserver "$HOST:$PORT" --noreload
start worker "$PY" manage.py rqworker default --worker-class rq.worker.SimpleWorker
start reconciler "$PY" manage.py run_reconciler
start bridge "$PY" manage.py run_bridge --client-id fleetgate-demo-bridge
# The gateways' hellos and discoveries are not kept for a bridge that has never
# subscribed (its first start): let it subscribe before they speak.
for _ in $(seq 1 100); do
  grep -q "Bridge connected" var/log/bridge.log 2>/dev/null && break
  sleep 0.2
done
sleep 0.3
# The demo fleet's gateways, simulated: every device the portal lists is on them, and
# the enrolled ones send a trickle of events, so the widgets change live.
start gateways "$PY" -m gateway simulate --fleet --secrets var/sim-secrets.json \
  --events-per-s 2 --latency-ms 300 --state-dir var/gateway-sim

wait_port "$PORT" "The portal"
cat <<MSG

  Fleetgate is running: http://$HOST:$PORT/
  Log in with any user printed above (password: $PASSWORD).
  Support staff: http://$HOST:$PORT/admin/ as "support".
  To try batch enrollment, import var/demo-enroll.csv (log in as "admin" or "enroller").
  Press Ctrl-C to stop.

MSG
wait -n "${pids[@]}" || true
say "A process exited; stopping the demo (see var/log/)."
exit 1
