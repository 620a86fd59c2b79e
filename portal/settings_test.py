"""Test settings: same as production settings, but fast hashing and a scratch var dir."""

import os
import tempfile

os.environ.setdefault("FLEETGATE_VAR_DIR", tempfile.mkdtemp(prefix="fleetgate-test-"))

from portal.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
