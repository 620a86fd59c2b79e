import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from devices.bridge import Bridge
from portal.choices import Role
from tests.factories import PASSWORD, make_member, make_organization


@pytest.fixture
def login(client):
    """Log ``user`` in on the test client and return the client."""

    def _login(user):
        assert client.login(username=user.username, password=PASSWORD)
        return client

    return _login


# The cast most tests need; a test file defines its own when it needs another.


@pytest.fixture
def org():
    """The organization a test acts in."""
    return make_organization("Acme")


@pytest.fixture
def other_org():
    """Another organization: what a test must never see, change or be told about."""
    return make_organization("Rival")


@pytest.fixture
def viewer(org):
    """A member without a role group: may look, may not change."""
    return make_member(org)


@pytest.fixture
def manager(org):
    """A Device Manager of ``org``."""
    return make_member(org, [Role.DEVICE_MANAGER])


@pytest.fixture
def publisher():
    """A plain MQTT client on the machine's Mosquitto, playing a gateway's messages."""
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex}"
    )
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    yield client
    client.loop_stop()
    client.disconnect()


@pytest.fixture
def bridge():
    """The portal's MQTT bridge, running in a thread of this process on the test database."""
    bridge = Bridge(client_id=f"test-bridge-{uuid.uuid4().hex}", batch_window=0.02)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    assert bridge.connected.wait(10), "the bridge did not connect to Mosquitto"
    time.sleep(0.2)  # the SUBSCRIBE is in flight right after CONNACK
    yield bridge
    bridge.stop()
    thread.join(10)


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
