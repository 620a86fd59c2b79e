"""Test settings: same as production settings, but fast hashing and a scratch var dir."""

import os
import tempfile

os.environ.setdefault("FLEETGATE_VAR_DIR", tempfile.mkdtemp(prefix="fleetgate-test-"))
# Redis database 1: a demo running on the same machine (database 0) and the tests never
# take each other's jobs. Processes the tests start inherit it through the environment.
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")
# DEBUG defaults to off; the tests run as a developer does (pytest-django still turns
# settings.DEBUG off inside each test). Processes the tests start inherit it.
os.environ.setdefault("DEBUG", "true")

from portal.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# A file, not SQLite's shared in-memory database: live-server threads, the bridge's
# writer thread and Channels' thread pool each get a real connection of their own.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}  # noqa: F405

# Tests render pages with DEBUG off and without ``collectstatic``: plain static names.
# (tests/test_static_files.py runs the production storage, collectstatic and all.)
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405  (WhiteNoise warns when it is missing)
