"""RabbitMQ's MQTT plugin as the second broker of the gateway link (docs/deploy.md).

``mqtt_port()`` takes a running RabbitMQ node from a clean state (plugin off) to an
MQTT listener on a port of its own — Mosquitto holds 1883 — or skips, saying why:

1. the listener is set at run time (``rabbitmqctl eval``: load the plugin's application,
   set its ``tcp_listeners``) *before* ``rabbitmq-plugins enable`` starts it, so it never
   tries 1883;
2. the same settings go to ``/etc/rabbitmq/conf.d/`` so that a restarted node does not
   try 1883 either (an enabled plugin whose port is taken stops the node's boot).

Users: the portal side and each gateway get their own RabbitMQ user (RabbitMQ refuses
a user name without a password); a gateway may only use its own topics, through
RabbitMQ's topic permissions on ``amq.topic`` (MQTT ``/`` is AMQP ``.``).
"""

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

PORT = int(os.environ.get("FLEETGATE_TEST_RABBITMQ_MQTT_PORT", "11883"))
PORTAL_USER, PORTAL_PASSWORD = "fleetgate-portal", "fleetgate-portal-test-password"
CONF_D = Path("/etc/rabbitmq/conf.d")
CONF_FILE = CONF_D / "60-fleetgate-mqtt.conf"
# The plugin's default prefetch (10) lets the bridge hold only 10 unacknowledged
# messages, and it acknowledges a whole batch after its commit: give it a batch's worth.
PREFETCH = 2000


def _listening() -> bool:
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=0.5).close()
        return True
    except OSError:
        return False


def _ctl(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=timeout
    )
    if done.returncode:
        raise RuntimeError(f"rabbitmqctl {args[0]}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def _configure_and_enable() -> None:
    conf = (
        f"# Written by Fleetgate's tests (tests/rabbitmq.py): MQTT beside Mosquitto.\n"
        f"mqtt.listeners.tcp.default = 127.0.0.1:{PORT}\n"
        f"mqtt.prefetch = {PREFETCH}\n"
        f"mqtt.allow_anonymous = false\n"
    )
    if CONF_D.parent.is_dir() and os.access(CONF_D.parent, os.W_OK):
        CONF_D.mkdir(exist_ok=True)
        CONF_FILE.write_text(conf)
    _ctl(
        "eval",
        "case application:load(rabbitmq_mqtt) of ok -> ok; {error, {already_loaded, _}} -> ok end, "
        f'application:set_env(rabbitmq_mqtt, tcp_listeners, [{{"127.0.0.1", {PORT}}}]), '
        f"application:set_env(rabbitmq_mqtt, prefetch, {PREFETCH}), "
        "application:set_env(rabbitmq_mqtt, allow_anonymous, false).",
    )
    done = subprocess.run(
        ["rabbitmq-plugins", "enable", "rabbitmq_mqtt"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode:
        raise RuntimeError(f"rabbitmq-plugins enable: {(done.stderr or done.stdout).strip()}")


def mqtt_port() -> int:
    """The port of RabbitMQ's MQTT listener, set up if need be; skips with the reason."""
    if not shutil.which("rabbitmqctl"):
        pytest.skip("RabbitMQ is not installed (no rabbitmqctl): apt-get install rabbitmq-server")
    if not _listening():
        try:
            _ctl("status", timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"RabbitMQ is installed but its node does not answer: {exc}")
        try:
            _configure_and_enable()
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"could not enable RabbitMQ's MQTT plugin on port {PORT}: {exc}")
        deadline = time.monotonic() + 30
        while not _listening():
            if time.monotonic() > deadline:
                pytest.skip(f"RabbitMQ's MQTT plugin is enabled but nothing listens on {PORT}")
            time.sleep(0.2)
    add_user(PORTAL_USER, PORTAL_PASSWORD)
    return PORT


def add_user(name: str, password: str, *, own_topics: bool = False) -> None:
    """A RabbitMQ user for MQTT; ``own_topics``: a gateway, limited to its own topics."""
    try:
        _ctl("add_user", name, password)
    except RuntimeError as exc:
        if "already exists" not in str(exc):
            raise
        _ctl("change_password", name, password)
    _ctl("set_permissions", "-p", "/", name, ".*", ".*", ".*")
    if own_topics:
        mine = rf"^fleetgate\.v1\.gw\.{name}\."
        _ctl("set_topic_permissions", "-p", "/", name, "amq.topic", mine, mine)


def delete_user(name: str) -> None:
    with contextlib.suppress(RuntimeError):
        _ctl("delete_user", name)


def url(user: str = PORTAL_USER, password: str = PORTAL_PASSWORD) -> str:
    return f"mqtt://{user}:{password}@127.0.0.1:{PORT}"
