"""The portal as deploy/ runs it: production settings, DEBUG off, collectstatic, daphne.

Only the database (the test database) and the secret key (a fresh one, shared with the
test process when it must sign sessions) differ from a real machine.
"""

import base64
import contextlib
import http.client
import secrets
import subprocess
import sys
import time
from pathlib import Path

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests import processes
from tests.gateway.portal_double import free_port

ROOT = Path(__file__).resolve().parent.parent


def environ(var_dir: Path, *, secret_key: str | None = None, hosts: str = "127.0.0.1") -> dict:
    """deploy/fleetgate.env.example as a machine fills it in, on the test's services."""
    shipped = {}
    for line in (ROOT / "deploy/fleetgate.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            shipped[name] = value
    local = {"DATABASE_URL", "REDIS_URL", "MQTT_URL"}  # the tests' own, from os.environ
    env = processes.env(**{k: v for k, v in shipped.items() if k not in local})
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        SECRET_KEY=secret_key or secrets.token_urlsafe(50),
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        LICENSE_PUBLIC_KEY=base64.b64encode(
            Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        ).decode(),
        ALLOWED_HOSTS=hosts,
        CSRF_TRUSTED_ORIGINS="",
        FLEETGATE_VAR_DIR=str(var_dir),
        FLEETGATE_PUBLIC_URL="https://127.0.0.1",
    )
    unfilled = [name for name, value in env.items() if value == "change-me"]
    assert not unfilled, f"fill these in for the test too: {unfilled}"
    return env


def collectstatic(env: dict) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
    )


@contextlib.contextmanager
def daphne(env: dict, log: Path | None = None):
    """``fleetgate-web@PORT``: daphne behind a proxy (``--proxy-headers``); yields its URL.

    ``log``: a file for its output (access log included), for a test's failure message.
    """
    port = free_port()
    output = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    server = processes.start(
        "-m", "daphne", "--proxy-headers", "-v", "2", "-b", "127.0.0.1", "-p", str(port),
        "portal.asgi:application",
        env=env, stdout=output, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server.poll() is None:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:  # any answer will do (a redirect to HTTPS, say): it is up
                probe.request("HEAD", "/")
                probe.getresponse()
                break
            except OSError:
                time.sleep(0.1)
            finally:
                probe.close()
        yield base
    finally:
        processes.stop(server)
        if log:
            output.close()
