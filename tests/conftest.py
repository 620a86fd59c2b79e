import pytest

from tests.factories import PASSWORD


@pytest.fixture
def login(client):
    """Log ``user`` in on the test client and return the client."""

    def _login(user):
        assert client.login(username=user.username, password=PASSWORD)
        return client

    return _login


@pytest.fixture
def firmware_storage(settings, tmp_path):
    """Firmware images in a storage of the test's own, so "nothing left behind" can be
    checked; returns its directory."""
    settings.STORAGES = {
        **settings.STORAGES,
        "firmware": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "firmware"},
        },
    }
    return tmp_path / "firmware"
