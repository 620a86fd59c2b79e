"""Start-up service checks: the real Redis, Mosquitto and PostgreSQL answer through their own
clients; a closed port gets one clear line; another program on the port is told apart."""

import contextlib
import io
import socket
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from portal import services

POSTGRES = {"ENGINE": "django.db.backends.postgresql", "HOST": "127.0.0.1", "NAME": "fleetgate"}


@pytest.fixture
def closed_port():
    """A port on loopback that nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mute_listener():
    """Accepts TCP connections (the kernel does the handshake) but never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        yield sock.getsockname()[1]


@pytest.fixture
def fake_server():
    """A server that answers whatever each connection sends first with ``reply``.

    Every connection is served: the checks open a plain one first (is anything there?),
    then let the service's client speak.
    """
    servers = []

    def start(reply: bytes) -> int:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)

        def serve():
            while True:
                try:
                    conn, _ = sock.accept()
                except OSError:
                    return  # closed at teardown
                with conn:
                    if conn.recv(4096):
                        conn.sendall(reply)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        servers.append((sock, thread))
        return sock.getsockname()[1]

    yield start
    for sock, thread in servers:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        sock.close()
        thread.join(timeout=2)


def preflight(*args):
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("preflight", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_timeouts_are_at_most_one_second():
    assert services.TIMEOUT <= 1.0


# --- the real services running on this machine ---------------------------------------------


@pytest.mark.services
def test_real_redis_answers():
    status = services.check_redis("redis://127.0.0.1:6379/0")
    assert status.ok, status.message
    assert str(status) == "OK  Redis answers at 127.0.0.1:6379"


@pytest.mark.services
def test_real_mosquitto_answers():
    status = services.check_mqtt("mqtt://127.0.0.1:1883")
    assert status.ok, status.message


@pytest.mark.services
def test_preflight_prints_ok_lines(settings):
    settings.REDIS_URL, settings.MQTT_URL = "redis://127.0.0.1:6379/0", "mqtt://127.0.0.1:1883"
    code, out, err = preflight()
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:2] == [
        "OK  Redis answers at 127.0.0.1:6379",
        "OK  Mosquitto (MQTT) answers at 127.0.0.1:1883",
    ]
    if connection.vendor == "sqlite":
        assert lines[2:] == ["OK  Database is SQLite: no server to check"]
    else:
        assert len(lines) == 3 and lines[2].startswith("OK  PostgreSQL")


# --- nothing there -------------------------------------------------------------------------


def test_redis_on_a_closed_port_says_how_to_start_it(closed_port):
    status = services.check_redis(f"redis://127.0.0.1:{closed_port}/0")
    assert not status.ok
    assert status.message == (
        f"Redis is not answering at 127.0.0.1:{closed_port} (Connection refused) — start it: "
        f"redis-server --daemonize yes --bind 127.0.0.1 --port {closed_port} --save '' "
        "--appendonly no (Debian package: redis-server)"
    )


def test_mosquitto_on_a_closed_port_says_how_to_start_it(closed_port):
    status = services.check_mqtt(f"mqtt://127.0.0.1:{closed_port}")
    assert not status.ok
    assert status.message.startswith(
        f"Mosquitto (MQTT) is not answering at 127.0.0.1:{closed_port}"
    )
    assert f"start it: mosquitto -d -p {closed_port} (Debian package: mosquitto)" in status.message


def test_postgres_on_a_closed_port_says_how_to_start_it(closed_port):
    status = services.check_postgres({**POSTGRES, "PORT": closed_port})
    assert not status.ok
    assert status.message.startswith(f"PostgreSQL is not answering at 127.0.0.1:{closed_port}")
    assert "service postgresql start (Debian package: postgresql)" in status.message


def test_postgres_is_not_checked_for_sqlite():
    assert services.check_postgres({"ENGINE": "django.db.backends.sqlite3", "NAME": "x"}) is None


def test_preflight_prints_one_line_per_missing_service_and_exits_1(settings, closed_port):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    settings.MQTT_URL = f"mqtt://127.0.0.1:{closed_port}"
    code, out, err = preflight("--require", "redis,mqtt")
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"MISSING  Redis is not answering at 127.0.0.1:{closed_port}")
    assert lines[1].startswith(
        f"MISSING  Mosquitto (MQTT) is not answering at 127.0.0.1:{closed_port}"
    )


def test_preflight_checks_postgres_when_configured(monkeypatch, closed_port):
    database = {**POSTGRES, "PORT": closed_port}  # as if DATABASE_URL named it
    monkeypatch.setitem(
        services.CHECKS, "db", lambda timeout: services.check_postgres(database, timeout)
    )
    code, _, err = preflight("--require", "db")
    assert code == 1
    assert f"PostgreSQL is not answering at 127.0.0.1:{closed_port}" in err


def test_preflight_refuses_unknown_services():
    with pytest.raises(CommandError, match="Unknown service.*nosql.*choose from redis, mqtt, db"):
        call_command("preflight", "--require", "redis,nosql")


# --- something there, but not the service --------------------------------------------------


@pytest.mark.parametrize(
    "check, url",
    [
        (services.check_redis, "redis://127.0.0.1:{port}"),
        (services.check_mqtt, "mqtt://127.0.0.1:{port}"),
    ],
)
def test_a_silent_listener_times_out_quickly(check, url, mute_listener):
    started = time.monotonic()
    status = check(url.format(port=mute_listener), timeout=0.2)
    assert time.monotonic() - started < 1.0
    assert not status.ok
    assert "did not answer as expected" in status.message
    assert "timed out" in status.message


def test_postgres_check_notices_another_program_on_the_port(fake_server):
    port = fake_server(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    status = services.check_postgres({**POSTGRES, "PORT": port})
    assert not status.ok
    assert f"PostgreSQL at 127.0.0.1:{port} did not answer as expected" in status.message
    assert services.ELSEWHERE in status.message


@pytest.mark.services
def test_real_postgres_that_refuses_the_login_still_answers():
    """The server is up (the portal's errors will name the login): OK, with what it said."""
    status = services.check_postgres(
        {**POSTGRES, "PORT": 5432, "NAME": "no_such_database_here", "USER": "postgres"}
    )
    if not status.ok and "not answering" in status.message:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    assert status.ok and "refused the login" in status.message
    assert "no_such_database_here" in status.message


def test_mqtt_refused_connect_names_the_reason(fake_server):
    port = fake_server(b"\x20\x02\x00\x05")
    status = services.check_mqtt(f"mqtt://user:wrong@127.0.0.1:{port}")
    assert not status.ok
    assert "CONNECT refused: not authorized" in status.message
    assert "MQTT_URL" in status.message


def test_redis_wrong_password_names_the_url(fake_server):
    port = fake_server(
        b"-WRONGPASS invalid username-password pair\r\n-NOAUTH Authentication required.\r\n"
    )
    status = services.check_redis(f"redis://:nope@127.0.0.1:{port}/0")
    assert not status.ok
    assert "login refused" in status.message
    assert "put the right password in REDIS_URL" in status.message
