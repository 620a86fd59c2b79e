"""The enrollment cycle end to end with the real parts: enroll through a simulated
gateway (its own process), delete the device while the gateway is away, bring the
gateway back — its hello gets the unenrollment out, the device resets to factory state —
then enroll it again. Redis (RQ), Mosquitto, the bridge and an RQ worker are real.
"""

import json
import os
import signal
import subprocess
import sys
import uuid

import pytest

from devices import operations
from devices.choices import DeviceState as S
from devices.models import Device, Gateway
from enrollment import services
from enrollment.choices import EnrollmentStatus
from enrollment.models import EnrollmentRecord
from gateway.drivers.simulated import NS, access_key, serial_number
from gateway.store import Store
from licensing import capacity
from tests.factories import (
    make_device_type,
    make_gateway,
    make_license,
    make_member,
    make_organization,
)
from tests.test_bridge import wait_for
from tests.test_provisioning_e2e import ROOT, worker  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

DEVICES = 4


class Simulator:
    """One simulated gateway as ``python -m gateway simulate``; stopped and started again."""

    def __init__(self, tmp_path, uid, secret):
        self.uid, self.state = uid, tmp_path / "gw"
        self.secrets = tmp_path / "secrets.json"
        self.secrets.write_text(json.dumps({uid: secret}))
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--log-level", "WARNING", "simulate"]
            + ["--secrets", str(self.secrets), "--devices", str(DEVICES)]
            + ["--latency-ms", "5", "--state-dir", str(self.state)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(15)

    def device(self, serial) -> dict:
        store = Store(self.state / self.uid / "agent.sqlite3")
        try:
            return store.items(NS)[serial]
        finally:
            store.close()


@pytest.fixture
def site(tmp_path, bridge, worker):  # noqa: F811 (fixtures)
    org = make_organization("Enrolling Co")
    uid, secret = f"enr-{uuid.uuid4().hex[:10]}", f"secret-{uuid.uuid4().hex}"
    gateway = make_gateway(org, uid=uid, secret=secret)
    simulator = Simulator(tmp_path, uid, secret)
    simulator.start()
    try:
        assert wait_for(lambda: Gateway.objects.get(pk=gateway.pk).is_online, 30)
        yield org, make_member(org, ["administrator"]), gateway, simulator
    finally:
        simulator.stop()


def enroll(org, user, gateway, serial, key):
    [record] = services.create(
        org,
        user,
        [
            {
                "serial_number": serial,
                "access_key": key,
                "device_type": make_device_type(),
                "gateway": gateway,
            }
        ],
    )
    services.send(org, user, [record])
    return record


def final(record):
    record.refresh_from_db()
    return record.status not in (EnrollmentStatus.PENDING, EnrollmentStatus.IN_PROGRESS)


def test_enroll_delete_while_away_unenroll_on_hello_and_enroll_again(site):
    org, user, gateway, simulator = site
    make_license(org, seats=5)
    serial = serial_number(gateway.uid, 1)

    wrong = enroll(org, user, gateway, serial, "NOT-THE-KEY")
    assert wait_for(lambda: final(wrong), 30)
    assert (wrong.status, wrong.reason) == (EnrollmentStatus.FAILED, "wrong access key")

    record = enroll(org, user, gateway, serial, access_key(serial))
    assert wait_for(lambda: final(record), 30)
    assert record.status == EnrollmentStatus.DONE
    device = Device.objects.get(organization=org, serial_number=serial)
    assert device.state == S.PROVISIONED and capacity.usage(org).used == 1
    simulator.stop()
    assert simulator.device(serial)["state"] == "provisioned"
    assert wait_for(lambda: not Gateway.objects.get(pk=gateway.pk).is_online, 30)

    operations.delete_devices(org, user, Device.objects.filter(pk=device.pk), "one device")
    device.refresh_from_db()
    assert device.state == S.UNENROLL_PENDING and capacity.usage(org).used == 0

    simulator.start()  # hello → the unenrollment goes out → acknowledged
    assert wait_for(lambda: Device.objects.get(pk=device.pk).state == S.UNENROLLED, 30)
    simulator.stop()
    assert simulator.device(serial)["state"] == "factory"
    assert simulator.device(serial)["enrollment"] is None

    simulator.start()
    assert wait_for(lambda: Gateway.objects.get(pk=gateway.pk).is_online, 30)
    again = enroll(org, user, gateway, serial, access_key(serial))
    assert wait_for(lambda: final(again), 30)
    assert again.status == EnrollmentStatus.DONE
    assert Device.objects.get(pk=device.pk).state == S.PROVISIONED
    statuses = EnrollmentRecord.objects.filter(device=device).order_by("pk")
    assert list(statuses.values_list("status", flat=True)) == ["failed", "done", "done"]
