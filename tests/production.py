"""The portal as deploy/ runs it: production settings, DEBUG off, collectstatic, daphne.

Only the database (the test database) and the secret key (a fresh one, shared with the
test process when it must sign sessions) differ from a real machine.
"""

import contextlib
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests import processes
from tests.gateway.portal_double import free_port

ROOT = Path(__file__).resolve().parent.parent


def environ(var_dir: Path, *, secret_key: str | None = None, hosts: str = "127.0.0.1") -> dict:
    return processes.env(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DEBUG="false",
        SECRET_KEY=secret_key or secrets.token_urlsafe(50),
        ALLOWED_HOSTS=hosts,
        FLEETGATE_VAR_DIR=str(var_dir),
    )


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
        for _ in range(150):
            try:
                urllib.request.urlopen(base + "/accounts/login/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # answering
            except OSError:
                time.sleep(0.1)
        yield base
    finally:
        processes.stop(server)
        if log:
            output.close()
