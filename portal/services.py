"""Is each outside service answering? One function per service, one line per answer.

The portal needs Redis (queues, channel layer), Mosquitto (the gateway link) and,
when ``DATABASE_URL`` names one, PostgreSQL. Each check first opens a TCP connection
(nothing there: the service is not running, and the line says the command that starts
it), then lets the service's own client speak to it — redis-py's PING, paho's CONNECT,
psycopg's login — so whatever it answers (a wrong password, a refused login, another
program on the port) is said in that client's words. Every step gives up after
``timeout`` seconds (1 s by default); ``manage.py preflight`` prints the lines as they are.
"""

import math
import socket
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
import psycopg
import redis
from django.conf import settings

from portal.redaction import redact

TIMEOUT = 1.0
ELSEWHERE = "is another program listening on that port?"

START_REDIS = (
    "redis-server --daemonize yes --bind 127.0.0.1 --port {port} --save '' --appendonly no"
    " (Debian package: redis-server)"
)
START_MOSQUITTO = "mosquitto -d -p {port} (Debian package: mosquitto)"
START_POSTGRES = "service postgresql start (Debian package: postgresql)"


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    ok: bool
    message: str

    def __str__(self):
        return f"{'OK' if self.ok else 'MISSING'}  {self.message}"


class NotAnswering(Exception):
    """Nothing accepted the connection (refused, timed out, unknown host)."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _reachable(address, timeout: float) -> None:
    """Open and close a connection to ``(host, port)`` or a Unix socket path."""
    try:
        if isinstance(address, str):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
        else:
            socket.create_connection(address, timeout=timeout).close()
    except OSError as exc:
        raise NotAnswering(_reason(exc)) from exc


def _missing(name, where, why, start) -> ServiceStatus:
    return ServiceStatus(
        name, False, f"{name} is not answering at {where} ({why}) — start it: {start}"
    )


def _wrong(name, where, detail, hint=ELSEWHERE) -> ServiceStatus:
    return ServiceStatus(
        name, False, f"{name} at {where} did not answer as expected ({detail}) — {hint}"
    )


# --- Redis ---------------------------------------------------------------------------------


def check_redis(url: str | None = None, timeout: float = TIMEOUT) -> ServiceStatus:
    """PING through redis-py (after AUTH when the URL carries a password), expect PONG."""
    name, url = "Redis", url or settings.REDIS_URL
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return ServiceStatus(
            name, False, f"REDIS_URL must start with redis:// or rediss://, not {redact(url)!r}"
        )
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    where = f"{host}:{port}"
    try:
        _reachable((host, port), timeout)
    except NotAnswering as exc:
        return _missing(name, where, exc, START_REDIS.format(port=port))
    client = redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry_on_timeout=False
    )
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        return _wrong(name, where, f"login refused: {exc}", "put the right password in REDIS_URL")
    except redis.RedisError as exc:
        return _wrong(name, where, _reason(exc.__context__ or exc))
    finally:
        client.close()
    return ServiceStatus(name, True, f"Redis answers at {where}")


# --- Mosquitto (MQTT) ----------------------------------------------------------------------


def check_mqtt(url: str | None = None, timeout: float = TIMEOUT) -> ServiceStatus:
    """CONNECT through paho (the portal's own MQTT client) and expect an accepting CONNACK."""
    name, url = "Mosquitto (MQTT)", url or settings.MQTT_URL
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl"):
        return ServiceStatus(
            name, False, f"MQTT_URL must start with mqtt:// or mqtts://, not {redact(url)!r}"
        )
    secure = parts.scheme in ("mqtts", "ssl")
    host, port = parts.hostname or "127.0.0.1", parts.port or (8883 if secure else 1883)
    where = f"{host}:{port}"
    try:
        _reachable((host, port), timeout)
    except NotAnswering as exc:
        return _missing(name, where, exc, START_MOSQUITTO.format(port=port))
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id="fleetgate-preflight",
        protocol=mqtt.MQTTv311,
    )
    if parts.username:
        client.username_pw_set(
            unquote(parts.username), unquote(parts.password) if parts.password else None
        )
    if secure:
        client.tls_set()
    client.connect_timeout = timeout
    answers = []
    client.on_connect = lambda c, userdata, flags, reason_code, props: answers.append(reason_code)
    try:
        client.connect(host, port, keepalive=max(5, math.ceil(timeout)))
        deadline = time.monotonic() + timeout
        while not answers and time.monotonic() < deadline:
            client.loop(timeout=0.05)
    except OSError as exc:
        return _wrong(name, where, f"no CONNACK: {_reason(exc)}")
    finally:
        client.disconnect()
        client.loop(timeout=0.01)  # sends the DISCONNECT: the broker logs a clean goodbye
    if not answers:
        return _wrong(name, where, "no CONNACK: timed out")
    if answers[0].is_failure:
        return _wrong(
            name,
            where,
            f"CONNECT refused: {str(answers[0]).lower()}",
            "check the user and password in MQTT_URL",
        )
    return ServiceStatus(name, True, f"Mosquitto (MQTT) answers at {where}")


# --- PostgreSQL ----------------------------------------------------------------------------


def check_postgres(database: dict | None = None, timeout: float = TIMEOUT) -> ServiceStatus | None:
    """None when the database is not PostgreSQL; otherwise whether the server speaks.

    Logs in through psycopg with the settings' user and database. A server that answers
    but refuses the login (wrong password, no such database) is up: the line says what it
    said, and Django's own errors will name it again when the portal starts.
    """
    name, database = "PostgreSQL", database or settings.DATABASES["default"]
    if "postgresql" not in database["ENGINE"]:
        return None
    host, port = database.get("HOST") or "127.0.0.1", int(database.get("PORT") or 5432)
    address = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)
    where = address if isinstance(address, str) else f"{host}:{port}"
    try:
        _reachable(address, timeout)
    except NotAnswering as exc:
        return _missing(name, where, exc, START_POSTGRES)
    login = {
        "host": host,
        "port": port,
        "dbname": database.get("NAME") or "postgres",
        "user": database.get("USER") or None,
        "password": database.get("PASSWORD") or None,
        "connect_timeout": max(1, math.ceil(timeout)),
    }
    try:
        psycopg.connect(**{k: v for k, v in login.items() if v is not None}).close()
    except psycopg.OperationalError as exc:
        said = " ".join(str(exc).split())
        if "FATAL" not in said:  # the server never spoke PostgreSQL's protocol
            return _wrong(name, where, said[:120])
        refusal = said[said.index("FATAL") :][:120]
        return ServiceStatus(
            name, True, f"PostgreSQL answers at {where}, but refused the login ({refusal})"
        )
    return ServiceStatus(
        name, True, f"PostgreSQL answers at {where} (database {database.get('NAME')})"
    )


CHECKS = {"redis": check_redis, "mqtt": check_mqtt, "db": check_postgres}
