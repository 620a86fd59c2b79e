"""The BLE driver against a fake scanner and client (no adapter exists here)."""

import asyncio
import json

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakDeviceNotFoundError

from gateway.codes import LinkState, ResultCode
from gateway.drivers import DriverError, OpContext
from gateway.drivers.ble import (
    ACK_CHAR_UUID,
    CONTROL_CHAR_UUID,
    IMAGE_CHAR_UUID,
    MANUFACTURER_ID,
    SERVICE_UUID,
    BleDriver,
    parse_advertisement,
)
from gateway.store import Store
from tests.gateway.helpers import IMAGE_SHA

ADDRESS = "aa:bb:cc:dd:ee:01"


def _adv(serial="BLE-0001", state=0, service=False, mfr=True, name=None):
    data = {MANUFACTURER_ID: b"FG\x01" + bytes([state]) + serial.encode()} if mfr else {}
    return AdvertisementData(
        local_name=name,
        manufacturer_data=data,
        service_data={},
        service_uuids=[SERVICE_UUID] if service else [],
        tx_power=None,
        rssi=-55,
        platform_data=(),
    )


class FakePeripheral:
    """A device that answers requests the way docs/gateway-protocol.md describes."""

    def __init__(self, ok=True, ack_id=None):
        self.ok, self.ack_id = ok, ack_id
        self.state, self.fw = "factory", "1.0.0"
        self.requests, self.image = [], b""

    def write(self, char, data):
        if char == CONTROL_CHAR_UUID:
            self.requests.append(json.loads(data))
        elif char == IMAGE_CHAR_UUID:
            self.image += bytes(data)

    def ack(self) -> bytes:
        req = self.requests[-1]
        if self.ok:
            if req["op"] in ("enroll", "provision", "reprovision"):
                self.state = "provisioned"
            elif req["op"] == "unenroll":
                self.state = "factory"
            elif req["op"] == "load_image":
                self.fw = req.get("ver", "x")
        ack = {"id": self.ack_id or req["id"], "ok": self.ok, "state": self.state, "fw": self.fw}
        if not self.ok:
            ack["err"] = "button not pressed"
        return json.dumps(ack).encode()


def fakes(peripheral=None, scan_error=None, connect_error=None, advs=None):
    peripheral = peripheral or FakePeripheral()
    advs = advs if advs is not None else {ADDRESS: _adv()}

    class Scanner:
        scans = 0

        @classmethod
        async def discover(cls, timeout, return_adv, **kwargs):
            cls.scans += 1
            if scan_error:
                raise scan_error
            return {a: (BLEDevice(a, None, None), adv) for a, adv in advs.items()}

    class Client:
        def __init__(self, device, timeout):
            self.device = device

        async def __aenter__(self):
            if connect_error:
                raise connect_error
            return self

        async def __aexit__(self, *exc):
            return False

        async def write_gatt_char(self, char, data, response=None):
            assert response is True
            peripheral.write(char, data)

        async def read_gatt_char(self, char):
            assert char == ACK_CHAR_UUID
            return bytearray(peripheral.ack())

    return Scanner, Client, peripheral


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "agent.sqlite3")
    yield s
    s.close()


def _driver(store, scanner, client, **options):
    return BleDriver(
        "gw-ble", {"scan_timeout_s": 0, **options}, store, scanner_cls=scanner, client_cls=client
    )


def _op(kind="enroll", serial="BLE-0001", **params):
    return {"op": "7", "kind": kind, "device": {"serial": serial}, "params": params}


def _ctx(image=None, progress=None):
    return OpContext("gw-ble", progress or (lambda d, t: None), image)


def test_advertisement_matching():
    info = parse_advertisement(ADDRESS, _adv(state=1))
    assert info == {
        "serial": "BLE-0001",
        "hardware_id": ADDRESS.upper(),
        "state": "provisioned",
        "rssi": -55,
    }
    assert parse_advertisement(ADDRESS, _adv(mfr=False, service=True, name="N1"))["serial"] == "N1"
    assert parse_advertisement(ADDRESS, _adv(mfr=False)) is None


def test_enroll_writes_the_payload_and_reads_the_ack(store):
    scanner, client, device = fakes()
    driver = _driver(store, scanner, client)
    params = {"device_type": "Sensor", "organization": "acme", "code": "1234", "config": {"i": 5}}
    info = asyncio.run(driver.execute(_op(**params), _ctx()))
    assert info["state"] == "provisioned" and info["hardware_id"] == ADDRESS.upper()
    assert device.requests == [
        {
            "v": 1,
            "id": "7",
            "op": "enroll",
            "gw": "gw-ble",
            "enr": {"device_type": "Sensor", "organization": "acme", "code": "1234"},
            "cfg": {"i": 5},
        }
    ]
    assert asyncio.run(driver.discover())[0]["serial"] == "BLE-0001"


def test_load_image_streams_chunks(store, tmp_path):
    scanner, client, device = fakes()
    image = tmp_path / "img"
    image.write_bytes(bytes(range(256)) * 4)
    seen = []
    driver = _driver(store, scanner, client, chunk_size=100)
    op = _op("load_image", url="http://p/i", sha256=IMAGE_SHA, size=1024, token="t", version="2.1")
    info = asyncio.run(driver.execute(op, _ctx(image, lambda d, t: seen.append(d))))
    assert device.image == image.read_bytes() and info["firmware"] == "2.1"
    assert seen[-1] == 1024 and len(seen) == 11


@pytest.mark.parametrize(
    ("peripheral", "connect_error", "code"),
    [
        (FakePeripheral(ok=False), None, ResultCode.REJECTED),
        (FakePeripheral(ack_id="other"), None, ResultCode.FAILED),
        (None, BleakDeviceNotFoundError(ADDRESS), ResultCode.NOT_FOUND),
        (None, TimeoutError(), ResultCode.TIMEOUT),
    ],
)
def test_link_failures(store, peripheral, connect_error, code):
    scanner, client, _ = fakes(peripheral, connect_error=connect_error)
    with pytest.raises(DriverError) as caught:
        asyncio.run(_driver(store, scanner, client).execute(_op(), _ctx()))
    assert caught.value.code is code


def test_unknown_device_and_oversized_request(store):
    scanner, client, _ = fakes()
    driver = _driver(store, scanner, client)
    with pytest.raises(DriverError) as caught:
        asyncio.run(driver.execute(_op(serial="BLE-9999"), _ctx()))
    assert caught.value.code is ResultCode.NOT_FOUND and scanner.scans == 1
    with pytest.raises(DriverError) as caught:
        asyncio.run(driver.execute(_op(config={f"k{i}": "v" * 200 for i in range(3)}), _ctx()))
    assert caught.value.code is ResultCode.BAD_PARAMS


@pytest.mark.parametrize(
    "error",
    [
        FileNotFoundError(2, "No such file or directory"),
        BleakDBusError(
            "org.freedesktop.DBus.Error.ServiceUnknown",
            ["The name org.bluez was not provided by any .service files"],
        ),
    ],
)
def test_no_adapter_becomes_a_clear_state(store, error):
    scanner, client, _ = fakes(scan_error=error)
    driver = _driver(store, scanner, client)
    asyncio.run(driver.start(lambda *a: None))
    assert driver.link_state is LinkState.UNAVAILABLE
    assert driver.link_detail == "no Bluetooth adapter available"
    with pytest.raises(DriverError) as caught:
        asyncio.run(driver.execute(_op(), _ctx()))
    assert caught.value.code is ResultCode.NO_ADAPTER


def test_real_bleak_on_this_machine_reports_no_adapter(store):
    driver = BleDriver("gw-ble", {"probe_timeout_s": 0.1}, store)
    asyncio.run(driver.start(lambda *a: None))
    if driver.link_state is LinkState.OK:
        pytest.skip("this machine has a working Bluetooth adapter")
    assert driver.link_detail == "no Bluetooth adapter available"
