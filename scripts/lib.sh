# Shared by scripts/demo.sh, scripts/test.sh and .ci/run: find Python, build the
# virtualenv, and get the local services (Redis, Mosquitto, PostgreSQL) answering.
# Sourced, not run.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# --- Python ≥ 3.12 (Django 6 needs it)
find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.12 python3.13 python3 \
      "$HOME"/.pyenv/versions/3.13*/bin/python3 "$HOME"/.pyenv/versions/3.12*/bin/python3; do
    [ -n "$candidate" ] || continue
    if "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
      command -v "$candidate" 2>/dev/null || echo "$candidate"
      return 0
    fi
  done
  return 1
}

ensure_venv() {
  if [ ! -x "$PY" ] || ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
    local python
    python="$(find_python)" || die "Fleetgate needs Python 3.12 or newer with venv. On Debian 13 / Ubuntu 24.04: sudo apt-get install python3 python3-venv; on older releases install python3.12 (deadsnakes, pyenv) and run again with PYTHON=/path/to/python3.12."
    say "Creating virtualenv with $python ($("$python" --version 2>&1))"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
  fi
  local stamp="$VENV/.fleetgate-installed"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    say "Installing Fleetgate and its dependencies into $VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$PY" -m pip install --quiet --disable-pip-version-check -e "$ROOT[dev]"
    touch "$stamp"
  fi
}

# --- Debian packages, installed only when missing
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
APT_UPDATED=""
apt_install() {
  command -v apt-get >/dev/null || die "Missing $*; install it with your package manager (Debian/Ubuntu: apt-get install $*)."
  say "Installing Debian packages: $*"
  if [ -z "$APT_UPDATED" ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

port_open() { timeout 1 bash -c "</dev/tcp/127.0.0.1/$1" 2>/dev/null; }

wait_port() {
  local port=$1 name=$2 i
  for i in $(seq 1 50); do port_open "$port" && return 0; sleep 0.2; done
  die "$name did not start on 127.0.0.1:$port"
}

ensure_redis() {
  port_open 6379 && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  say "Starting Redis on 127.0.0.1:6379 (nothing kept on disk)"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/fleetgate-redis.log >/dev/null
  wait_port 6379 Redis
}

ensure_mosquitto_installed() {
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || apt_install mosquitto
}
MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"

# The test suite's broker: anonymous, on 1883.
ensure_mosquitto() {
  port_open 1883 && return 0
  ensure_mosquitto_installed
  say "Starting Mosquitto on 127.0.0.1:1883"
  if [ -r /etc/mosquitto/mosquitto.conf ] && [ "$(id -u)" -eq 0 ]; then
    /usr/sbin/mosquitto -d -c /etc/mosquitto/mosquitto.conf
  else
    /usr/sbin/mosquitto -d -c "$ROOT/scripts/mosquitto-local.conf"
  fi
  wait_port 1883 Mosquitto
}

# The demo's own Mosquitto, never the machine's 1883: its own port, and the accounts and
# per-gateway ACLs the portal writes (manage.py broker_config) under var/mosquitto/. Exports
# MQTT_URL (the portal's login) and FLEETGATE_BROKER_CONFIG_DIR (so adding, rotating or
# deleting a gateway rewrites the files and tells Mosquitto) for every process started after.
DEMO_MQTT_PORT="${FLEETGATE_MQTT_PORT:-1884}"
demo_broker_config() {
  local dir="$ROOT/var/mosquitto"
  mkdir -p "$dir"
  if [ ! -s "$dir/portal-password" ]; then
    (umask 077; "$PY" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$dir/portal-password")
  fi
  export FLEETGATE_BROKER_CONFIG_DIR="$dir"
  export MQTT_URL="mqtt://fleetgate-portal:$(cat "$dir/portal-password")@127.0.0.1:$DEMO_MQTT_PORT"
  port_open "$DEMO_MQTT_PORT" && die "Port $DEMO_MQTT_PORT is taken (an earlier demo's Mosquitto?); stop it or set FLEETGATE_MQTT_PORT."
  "$PY" manage.py broker_config --out "$dir" --listen "127.0.0.1:$DEMO_MQTT_PORT"
}

# A PostgreSQL URL that works both with trust auth and with Debian's default
# (password over TCP): the postgres role gets this password when it has none.
PG_URL_DEFAULT="postgres://postgres:fleetgate@127.0.0.1:5432/fleetgate"

ensure_postgres() {
  if ! port_open 5432; then
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    say "Starting PostgreSQL"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
    wait_port 5432 PostgreSQL
  fi
  if ! PGPASSWORD=fleetgate psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    say "Giving the local postgres role a password for TCP logins"
    if [ "$(id -u)" -eq 0 ]; then
      su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'fleetgate'\"" >/dev/null
    else
      sudo -u postgres psql -qc "ALTER USER postgres PASSWORD 'fleetgate'" >/dev/null
    fi
  fi
}

# nginx only to check deploy/nginx/fleetgate.conf in the tests (nginx -t, then a real
# proxy in front of daphne): Debian's package unpacked under var/, never installed as a
# service, so nothing listens on 80/443 and no machine configuration changes.
NGINX_ROOT="$ROOT/var/nginx-root"
ensure_nginx() {
  command -v nginx >/dev/null && return 0
  [ -x "$NGINX_ROOT/usr/sbin/nginx" ] && return 0
  command -v apt-get >/dev/null || { say "No nginx and no apt-get: the nginx site test will be skipped"; return 0; }
  say "Unpacking Debian's nginx into $NGINX_ROOT (for the deploy/ tests; not installed as a service)"
  if [ -z "$APT_UPDATED" ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  local tmp
  tmp="$(mktemp -d)"
  (cd "$tmp" && apt-get download -qq nginx nginx-common 2>/dev/null) || { rm -rf "$tmp"; say "Could not download nginx: the nginx site test will be skipped"; return 0; }
  mkdir -p "$NGINX_ROOT"
  for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$NGINX_ROOT"; done
  rm -rf "$tmp"
}

ensure_chromium() {
  [ -x /usr/bin/chromium ] || apt_install chromium
}
