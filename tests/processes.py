"""Portal processes (server, worker, bridge, reconciler) started by tests on the test database.

A deployed portal runs these as separate processes; tests that kill or restart one
start them the same way, pointed at the test database through ``DATABASE_URL``.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = quote(s["USER"] or "") + (f":{quote(s['PASSWORD'])}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def env(**extra) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings_test",  # same password hasher
        "DATABASE_URL": database_url(),
        **extra,
    }


def start(*args, **popen) -> subprocess.Popen:
    """``python <args>`` in its own process group, from the project root."""
    popen.setdefault("stdout", subprocess.DEVNULL)
    popen.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=popen.pop("env", env()),
        start_new_session=True,
        **popen,
    )


def stop(process: subprocess.Popen | None, sig=signal.SIGTERM, timeout=10) -> None:
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def worker(environ: dict | None = None, **popen) -> subprocess.Popen:
    """An RQ worker as the demo runs it (SimpleWorker: no fork per job).

    ``environ``: extra environment (e.g. a private ``REDIS_URL``/``MQTT_URL``).
    """
    return start(
        "manage.py",
        "rqworker",
        "default",
        "--worker-class",
        "rq.SimpleWorker",
        env=env(**(environ or {})),
        **popen,
    )


def bridge(environ: dict | None = None, **popen) -> subprocess.Popen:
    """``manage.py run_bridge``: the gateways' messages into the database."""
    return start("manage.py", "run_bridge", env=env(**(environ or {})), **popen)


def reconciler(environ: dict | None = None, every: float = 0.5, **popen) -> subprocess.Popen:
    """``manage.py run_reconciler``, passing more often than the default so tests are short."""
    return start(
        "manage.py", "run_reconciler", "--every", str(every), env=env(**(environ or {})), **popen
    )
