"""Is each outside service answering? One function per service, one line per answer.

The portal needs Redis (queues, channel layer), Mosquitto (the gateway link) and,
when ``DATABASE_URL`` names one, PostgreSQL. Each check opens a TCP connection, speaks
just enough of the service's protocol to know it really is that service, and gives
up after ``timeout`` seconds (1 s by default). A failed check names the service,
where it was looked for and the command that starts it, so ``manage.py preflight``
can print it as it is.
"""

import socket
import ssl
import struct
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

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


def _reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return exc.strerror or str(exc) or type(exc).__name__


def _exchange(address, payload: bytes, *, done, timeout: float, tls_host: str | None = None):
    """Send ``payload`` and read until ``done(data)`` is true or the peer closes.

    ``address`` is ``(host, port)`` or a Unix socket path. Raises NotAnswering when the
    connection cannot be made, OSError when the peer misbehaves after it was.
    """
    try:
        if isinstance(address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(address)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection(address, timeout=timeout)
    except OSError as exc:
        raise NotAnswering(_reason(exc)) from exc
    with sock:
        sock.settimeout(timeout)
        stream = (
            ssl.create_default_context().wrap_socket(sock, server_hostname=tls_host)
            if tls_host
            else sock
        )
        with stream:
            stream.sendall(payload)
            data = b""
            while not done(data):
                chunk = stream.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data


def _missing(name, where, why, start) -> ServiceStatus:
    return ServiceStatus(
        name, False, f"{name} is not answering at {where} ({why}) — start it: {start}"
    )


def _wrong(name, where, detail, hint=ELSEWHERE) -> ServiceStatus:
    return ServiceStatus(
        name, False, f"{name} at {where} did not answer as expected ({detail}) — {hint}"
    )


# --- Redis ---------------------------------------------------------------------------------


def _resp(*parts: str) -> bytes:
    encoded = [part.encode() for part in parts]
    return f"*{len(encoded)}\r\n".encode() + b"".join(
        b"$%d\r\n%s\r\n" % (len(p), p) for p in encoded
    )


def check_redis(url: str | None = None, timeout: float = TIMEOUT) -> ServiceStatus:
    """PING (after AUTH when the URL carries a password) and expect PONG."""
    name, url = "Redis", url or settings.REDIS_URL
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return ServiceStatus(
            name, False, f"REDIS_URL must start with redis:// or rediss://, not {redact(url)!r}"
        )
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    where = f"{host}:{port}"
    request, replies = _resp("PING"), 1
    if parts.password:
        user = [unquote(parts.username)] if parts.username else []
        request, replies = _resp("AUTH", *user, unquote(parts.password)) + request, 2
    tls_host = host if parts.scheme == "rediss" else None
    try:
        data = _exchange(
            (host, port),
            request,
            done=lambda d: d.count(b"\r\n") >= replies,
            timeout=timeout,
            tls_host=tls_host,
        )
    except NotAnswering as exc:
        return _missing(name, where, exc, START_REDIS.format(port=port))
    except OSError as exc:
        return _wrong(name, where, _reason(exc))
    lines = data.split(b"\r\n")
    if b"+PONG" in lines:
        return ServiceStatus(name, True, f"Redis answers at {where}")
    error = next((line.decode(errors="replace") for line in lines if line.startswith(b"-")), "")
    if "NOAUTH" in error or "WRONGPASS" in error:
        return _wrong(name, where, error[:80], "put the right password in REDIS_URL")
    return _wrong(name, where, error[:80] or "no PONG to PING")


# --- Mosquitto (MQTT) ----------------------------------------------------------------------


def _mqtt_string(value: str) -> bytes:
    data = value.encode()
    return struct.pack("!H", len(data)) + data


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_connect_packet(client_id: str, username=None, password=None) -> bytes:
    """An MQTT 3.1.1 CONNECT: clean session, 10 s keep-alive, optional user and password."""
    flags = 0x02 | (0x80 if username else 0) | (0x40 if username and password else 0)
    body = (
        _mqtt_string("MQTT") + bytes([4, flags]) + struct.pack("!H", 10) + _mqtt_string(client_id)
    )
    if username:
        body += _mqtt_string(username) + (_mqtt_string(password) if password else b"")
    return b"\x10" + _remaining_length(len(body)) + body


CONNACK_REFUSALS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


def check_mqtt(url: str | None = None, timeout: float = TIMEOUT) -> ServiceStatus:
    """Send CONNECT and expect a CONNACK that accepts it."""
    name, url = "Mosquitto (MQTT)", url or settings.MQTT_URL
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl"):
        return ServiceStatus(
            name, False, f"MQTT_URL must start with mqtt:// or mqtts://, not {redact(url)!r}"
        )
    secure = parts.scheme in ("mqtts", "ssl")
    host, port = parts.hostname or "127.0.0.1", parts.port or (8883 if secure else 1883)
    where = f"{host}:{port}"
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    # DISCONNECT right behind CONNECT: the broker answers CONNACK, then logs a clean goodbye.
    request = mqtt_connect_packet("fleetgate-preflight", username, password) + b"\xe0\x00"
    try:
        connack = _exchange(
            (host, port),
            request,
            done=lambda d: len(d) >= 4,
            timeout=timeout,
            tls_host=host if secure else None,
        )[:4]
    except NotAnswering as exc:
        return _missing(name, where, exc, START_MOSQUITTO.format(port=port))
    except OSError as exc:
        return _wrong(name, where, f"no CONNACK: {_reason(exc)}")
    if len(connack) < 4 or connack[:2] != b"\x20\x02":
        return _wrong(name, where, f"no CONNACK, got {connack.hex() or 'nothing'}")
    if connack[3]:
        refusal = CONNACK_REFUSALS.get(connack[3], f"return code {connack[3]}")
        return _wrong(
            name, where, f"CONNECT refused: {refusal}", "check the user and password in MQTT_URL"
        )
    return ServiceStatus(name, True, f"Mosquitto (MQTT) answers at {where}")


# --- PostgreSQL ----------------------------------------------------------------------------

SSL_REQUEST = struct.pack("!II", 8, 80877103)


def check_postgres(database: dict | None = None, timeout: float = TIMEOUT) -> ServiceStatus | None:
    """None when the database is not PostgreSQL; otherwise whether the server speaks.

    Sends the protocol's SSLRequest, which every PostgreSQL server answers with one
    byte ('S' or 'N') before any authentication. Logging in is left to Django, whose
    errors already name the database and the user.
    """
    name, database = "PostgreSQL", database or settings.DATABASES["default"]
    if "postgresql" not in database["ENGINE"]:
        return None
    host, port = database.get("HOST") or "127.0.0.1", int(database.get("PORT") or 5432)
    address = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)
    where = address if isinstance(address, str) else f"{host}:{port}"
    try:
        answer = _exchange(address, SSL_REQUEST, done=bool, timeout=timeout)
    except NotAnswering as exc:
        return _missing(name, where, exc, START_POSTGRES)
    except OSError as exc:
        return _wrong(name, where, _reason(exc))
    if answer not in (b"S", b"N"):
        return _wrong(name, where, f"answered {answer[:16]!r} to SSLRequest")
    return ServiceStatus(
        name, True, f"PostgreSQL answers at {where} (database {database.get('NAME')})"
    )


CHECKS = {"redis": check_redis, "mqtt": check_mqtt, "db": check_postgres}
