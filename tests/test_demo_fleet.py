"""The demo tells one story: the portal's seeded devices and the simulated gateways'
devices are the same fleet (``gateway.fleet``), device by device — so every action the
portal sends finds its device, every event names a device the portal lists, and the
demo's enrollment list imports as written."""

import asyncio
import io

import pytest
from django.core.management import call_command

from devices.choices import DeviceState
from devices.models import Device, Gateway
from enrollment import batch
from gateway import fleet
from gateway.codes import OpKind
from gateway.drivers import OpContext
from gateway.drivers.simulated import SimulatedDriver, access_key
from gateway.store import Store
from portal.models import Organization

pytestmark = pytest.mark.django_db

# The device's own state on its link, for each state the portal may show it in.
LINK_STATE = {
    DeviceState.PROVISIONED: "provisioned",
    DeviceState.DEPROVISIONED: "deprovisioned",
    DeviceState.DISCOVERED: "factory",
    DeviceState.FAILED: "factory",
}


@pytest.fixture
def drivers(tmp_path):
    """Every seeded gateway's simulated driver, as ``simulate --fleet`` builds it."""
    call_command("seed_demo", stdout=io.StringIO())
    stores, drivers = [], {}
    for gateway in Gateway.objects.order_by("uid"):
        store = Store(tmp_path / gateway.uid / "agent.sqlite3")
        stores.append(store)
        drivers[gateway.uid] = SimulatedDriver(gateway.uid, {"fleet": True}, store)
    yield drivers
    for store in stores:
        store.close()


def test_every_seeded_device_is_on_the_gateway_the_portal_names(drivers):
    devices = Device.objects.select_related("gateway", "device_type")
    assert devices.count() == fleet.DEMO.devices + fleet.OTHER.devices
    for device in devices:
        assert device.gateway is not None, device
        driver = drivers[device.gateway.uid]
        assert device.serial_number in driver.devices, f"{device} is not on {device.gateway.uid}"
        info = driver.info(device.serial_number)
        assert info["hardware_id"] == device.hardware_id, device
        assert info["device_type"] == device.device_type.name, device
        assert info["state"] == LINK_STATE[device.state], device


def test_the_gateways_have_nothing_more_than_the_new_devices_to_enroll(drivers):
    seeded = set(Device.objects.values_list("gateway__uid", "serial_number"))
    for uid, driver in drivers.items():
        extra = {s for s in driver.devices if (uid, s) not in seeded}
        assert extra, uid  # something to enroll on every gateway
        assert all(driver.info(s)["state"] == "factory" for s in extra)
        assert all(driver.info(s)["device_type"] in fleet.DEVICE_TYPES for s in extra)


def test_only_devices_the_portal_lists_send_events(drivers):
    listed = set(Device.objects.values_list("serial_number", flat=True))
    for driver in drivers.values():
        talking = set(driver._talking())
        assert talking and talking <= listed


def test_provisioning_a_seeded_device_succeeds_on_its_gateway(drivers):
    """What the issue saw: "no device BLE-0000004 on this gateway"."""
    device = Device.objects.filter(state=DeviceState.DISCOVERED).select_related("gateway").first()
    driver = SimulatedDriver(
        device.gateway.uid, {"fleet": True, "latency_ms": 0}, drivers[device.gateway.uid].store
    )
    ref = {"serial": device.serial_number, "hardware_id": device.hardware_id}
    ctx = OpContext(device.gateway.uid, lambda done, total: None)
    for kind in (OpKind.PROVISION, OpKind.DEPROVISION, OpKind.REPROVISION, OpKind.UNENROLL):
        info = asyncio.run(driver.execute({"op": kind, "kind": kind, "device": ref}, ctx))
        assert info["serial"] == device.serial_number


def test_the_demo_enrollment_list_imports_as_written(drivers, tmp_path):
    out = tmp_path / "demo-enroll.csv"
    call_command(
        "simulated_keys",
        organization="demo",
        out=str(out),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    org = Organization.objects.get(slug="demo")
    checked = batch.check(org, batch.parse(out.read_bytes()))
    assert checked.invalid == [], [r.reason for r in checked.invalid][:3]
    assert len(checked.valid) == fleet.DEMO.gateways * fleet.DEMO.new_per_gateway
    for row in checked.valid:
        uid = row.fields["gateway"].uid
        device = drivers[uid].info(row.fields["serial_number"])
        assert device["state"] == "factory"
        assert device["device_type"] == row.fields["device_type"].name
        assert row.fields["access_key"] == access_key(row.fields["serial_number"])
        area = fleet.DEMO.area(int(uid.rsplit("-", 1)[1]))
        assert row.fields["name"].startswith(area) and row.fields["location_note"].startswith(area)


def test_a_gateway_outside_the_fleet_is_refused_by_the_fleet_driver(tmp_path):
    store = Store(tmp_path / "agent.sqlite3")
    with pytest.raises(ValueError, match="demo fleet"):
        SimulatedDriver("somewhere-else", {"fleet": True}, store)
    store.close()
