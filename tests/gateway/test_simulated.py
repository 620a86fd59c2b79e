"""The simulated driver: latency, seeded failures, persistence, factory reset, images, events."""

import asyncio
import re
import time
from pathlib import Path

import pytest

from gateway.codes import ResultCode
from gateway.drivers import DriverError, OpContext, make_driver
from gateway.drivers.simulated import SimulatedDriver, access_key, hardware_id, serial_number
from gateway.store import Store
from tests.gateway.helpers import IMAGE_SHA, op

GW = "gw-sim"


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "agent.sqlite3")
    yield s
    s.close()


def _driver(store, **options) -> SimulatedDriver:
    return SimulatedDriver(GW, {"devices": 5, "latency_ms": 0, **options}, store)


def _ctx(progress=None, image=None):
    return OpContext(GW, progress or (lambda done, total: None), image)


def _op(i, kind="provision", **params):
    return op(i, kind, serial=serial_number(GW, 1), **params)


def run(coro):
    return asyncio.run(coro)


def test_identities_are_stable_and_mac_like():
    assert serial_number(GW, 7) == "SIM-gw-sim-00007"
    ids = {hardware_id(GW, n) for n in range(1, 2001)}
    assert len(ids) == 2000
    assert all(re.fullmatch(r"([0-9A-F]{2}:){5}[0-9A-F]{2}", h) for h in ids)
    assert all(int(h[:2], 16) & 0b11 == 0b10 for h in ids)  # locally administered unicast
    assert hardware_id(GW, 1) == hardware_id(GW, 1)


def test_make_driver_and_option_checks(store):
    assert isinstance(make_driver("simulated", GW, {}, store), SimulatedDriver)
    with pytest.raises(ValueError, match="unknown driver"):
        make_driver("lon", GW, {}, store)
    with pytest.raises(ValueError, match="unknown driver options"):
        make_driver("simulated", GW, {"devicez": 1}, store)
    with pytest.raises(ValueError, match="failure_rate"):
        make_driver("simulated", GW, {"failure_rate": "1.5"}, store)


def test_latency(store):
    driver = _driver(store, latency_ms=40)
    started = time.perf_counter()
    run(driver.execute(_op(1, "wink"), _ctx()))
    assert time.perf_counter() - started >= 0.04


def test_failures_are_seeded_by_operation_id(store, tmp_path):
    async def outcomes(driver):
        got = {}
        for i in range(200):
            try:
                await driver.execute(_op(i), _ctx())
                got[i] = "ok"
            except DriverError as e:
                assert e.code is ResultCode.FAILED and e.device["serial"] == serial_number(GW, 1)
                got[i] = "failed"
        return got

    first = run(outcomes(_driver(store, failure_rate=0.3, seed=7)))
    other = Store(tmp_path / "other.sqlite3")
    again = run(outcomes(_driver(other, failure_rate=0.3, seed=7)))
    other.close()
    assert first == again
    assert 30 <= list(first.values()).count("failed") <= 90
    assert all(v == "failed" for v in run(outcomes(_driver(store, failure_rate=1))).values())


def test_enrollment_persists_across_restarts(store):
    driver = _driver(store)
    params = {
        "device_type": "Sensor",
        "organization": "acme",
        "code": access_key(serial_number(GW, 1)),
        "config": {"interval": 5},
    }
    info = run(driver.execute(_op(1, "enroll", **params), _ctx()))
    assert info["state"] == "provisioned"
    driver.checkpoint()
    again = _driver(store)  # a restarted agent
    device = again.devices[serial_number(GW, 1)]
    assert device["state"] == "provisioned" and device["config"] == {"interval": 5}
    assert device["enrollment"] == {"device_type": "Sensor", "organization": "acme"}
    assert again.devices[serial_number(GW, 2)]["state"] == "factory"


def test_a_wrong_access_key_is_rejected_and_changes_nothing(store):
    driver = _driver(store)
    with pytest.raises(DriverError) as refused:
        run(driver.execute(_op(1, "enroll", code="NOT-THE-KEY"), _ctx()))
    assert refused.value.code == ResultCode.REJECTED
    assert driver.devices[serial_number(GW, 1)]["state"] == "factory"


def test_lifecycle_and_factory_reset(store):
    driver = _driver(store)

    async def go():
        await driver.execute(_op(1, "enroll", config={"a": 1}), _ctx())
        assert (await driver.execute(_op(2, "deprovision"), _ctx()))["state"] == "deprovisioned"
        assert (await driver.execute(_op(3, "reprovision"), _ctx()))["state"] == "provisioned"
        return await driver.execute(_op(4, "unenroll"), _ctx())

    info = run(go())
    device = driver.devices[serial_number(GW, 1)]
    assert info["state"] == "factory" and device["config"] == {} and device["enrollment"] is None
    assert info["firmware"] == "1.0.0"


def test_load_image_reports_progress_at_transfer_speed(store):
    driver = _driver(store, transfer_bps=100_000)
    seen = []
    image_op = _op(
        2, "load_image", url="http://x/i", sha256=IMAGE_SHA, size=10_000, token="t", version="2.0.0"
    )

    async def go():
        await driver.execute(_op(1, "provision"), _ctx())
        started = time.perf_counter()
        info = await driver.execute(image_op, _ctx(lambda d, t: seen.append((d, t)), Path("/x")))
        return info, time.perf_counter() - started

    info, seconds = run(go())
    assert info["firmware"] == "2.0.0"
    assert seconds >= 0.09
    assert seen[-1] == (10_000, 10_000) and len(seen) == 10
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_load_image_needs_an_enrolled_device(store):
    image_op = _op(1, "load_image", url="http://x/i", sha256=IMAGE_SHA, size=10, token="t")
    with pytest.raises(DriverError) as caught:
        run(_driver(store).execute(image_op, _ctx()))
    assert caught.value.code is ResultCode.INVALID_STATE


def test_unknown_device_or_hardware_id(store):
    driver = _driver(store)
    for ref in (
        {"serial": "SIM-nobody-00001"},
        {"serial": serial_number(GW, 1), "hardware_id": "02:00:00:00:00:00"},
    ):
        with pytest.raises(DriverError) as caught:
            run(driver.execute({**op(1), "device": ref}, _ctx()))
        assert caught.value.code is ResultCode.NOT_FOUND


def test_discover_and_events(store):
    driver = _driver(store, events_per_s=400)
    events = []

    async def go():
        await driver.start(lambda device, kind, data: events.append((device, kind, data)))
        await asyncio.sleep(0.3)
        await driver.stop()
        return await driver.discover()

    devices = run(go())
    assert [d["serial"] for d in devices] == [serial_number(GW, n) for n in range(1, 6)]
    assert 60 <= len(events) <= 180
    assert events[0][1] == "telemetry" and events[0][2]["seq"] == 1
