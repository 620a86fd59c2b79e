"""Live updates end to end, in real Chromium: gateway → Mosquitto → bridge → Redis →
ASGI server → WebSocket → the Devices row, without a reload; and the page reconnects
by itself after the server restarts, resynchronising what it missed.

The ASGI server is a real ``runserver`` (daphne) subprocess on the test database
file, so it can be killed and started again like a deployed portal.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.db import connection

from devices.choices import DeviceState
from devices.models import Device
from gateway.protocol import MsgType
from portal.choices import Role
from tests.browser import ARTIFACTS, TIMEOUT_MS, chromium_page
from tests.factories import (
    PASSWORD,
    make_device,
    make_device_type,
    make_gateway,
    make_member,
    make_organization,
)
from tests.test_bridge import SECRET, send, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect
expect.set_options(timeout=TIMEOUT_MS)
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Portal:
    """``manage.py runserver`` (daphne: HTTP and WebSockets) on the test database."""

    def __init__(self, database: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings_test",  # same password hasher
            "DATABASE_URL": f"sqlite:///{database}",
            "DEBUG": "true",
        }
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if not wait_for(self.answering, timeout=30, interval=0.1):
            self.stop()
            pytest.fail("the portal did not start")

    def answering(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.process = None


@pytest.fixture
def portal():
    if connection.vendor != "sqlite":
        pytest.skip("the server subprocess shares the test database as a SQLite file")
    server = Portal(connection.settings_dict["NAME"])
    server.start()
    yield server
    server.stop()


@pytest.fixture
def page(monkeypatch):
    with chromium_page(monkeypatch) as page:
        yield page


@pytest.fixture
def site():
    org = make_organization("Live Building Co")
    make_member(org, [Role.DEVICE_MANAGER], username="watcher")
    gateway = make_gateway(org, uid=f"gw-{uuid.uuid4().hex[:12]}", secret=SECRET)
    sensor = make_device_type("Occupancy sensor")
    devices = [
        make_device(
            org, sensor, serial_number=f"OCC-{n:03d}", gateway=gateway, state=DeviceState.UNENROLLED
        )
        for n in range(1, 4)
    ]
    return {"org": org, "gateway": gateway, "devices": devices}


def open_dashboard(page, portal):
    page.goto(f"{portal.url}/accounts/login/")
    page.get_by_label("Username").fill("watcher")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#devices-results tbody tr")).to_have_count(3)
    expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")


def state_cell(page, device):
    return page.locator(f"#device-{device.pk} .device-state")


def test_a_gateway_report_changes_the_row_without_a_reload(page, portal, bridge, publisher, site):
    first, second, third = site["devices"]
    open_dashboard(page, portal)
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    expect(state_cell(page, first)).to_have_text("Unenrolled")

    # The gateway sees two of the devices again: one coalesced update for both rows.
    devices = [{"serial": first.serial_number}, {"serial": second.serial_number}]
    send(publisher, site["gateway"].uid, MsgType.DISCOVERY, {"devices": devices})
    expect(state_cell(page, first)).to_have_text("Discovered")
    expect(state_cell(page, second)).to_have_text("Discovered")
    expect(state_cell(page, first)).to_have_attribute("data-state", "discovered")
    expect(state_cell(page, third)).to_have_text("Unenrolled")
    assert page.evaluate("window.__sameDocument") is True
    assert page.errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-live-update.png"), full_page=True)


def test_the_page_reconnects_after_a_restart_and_catches_up(page, portal, bridge, publisher, site):
    first, _, third = site["devices"]
    open_dashboard(page, portal)
    page.evaluate("window.__sameDocument = true")

    portal.stop()
    expect(page.locator("#live-indicator")).to_have_attribute("data-state", "reconnecting")
    # While no server is there to push it, the gateway reports a device again.
    send(publisher, site["gateway"].uid, MsgType.DISCOVERY, {"devices": [{"serial": "OCC-003"}]})
    assert wait_for(lambda: Device.objects.get(pk=third.pk).state == DeviceState.DISCOVERED)
    expect(state_cell(page, third)).to_have_text("Unenrolled")  # nothing pushed it yet

    portal.start()
    expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
    expect(state_cell(page, third)).to_have_text("Discovered")  # the resync snapshot
    # And pushes flow again on the new socket.
    send(publisher, site["gateway"].uid, MsgType.DISCOVERY, {"devices": [{"serial": "OCC-001"}]})
    expect(state_cell(page, first)).to_have_text("Discovered")
    assert page.evaluate("window.__sameDocument") is True
    assert page.errors == []


def test_the_device_page_follows_its_device_live(page, portal, bridge, publisher, site):
    """Issue 9, point 4: the device page's state (and what it offers) change live."""
    first = site["devices"][0]
    open_dashboard(page, portal)
    page.goto(f"{portal.url}/devices/{first.pk}/")
    expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
    page.evaluate("window.__sameDocument = true")
    expect(state_cell(page, first)).to_have_text("Unenrolled")
    page.get_by_role("button", name="Actions").click()
    provision = page.get_by_role("menuitem", name=re.compile(r"^Provision…"))
    expect(provision).to_have_attribute("aria-disabled", "true")  # not while unenrolled
    page.keyboard.press("Escape")

    send(
        publisher,
        site["gateway"].uid,
        MsgType.DISCOVERY,
        {"devices": [{"serial": first.serial_number}]},
    )
    expect(state_cell(page, first)).to_have_text("Discovered")
    # The rest of the page follows: its details, and provisioning is offered now.
    expect(page.locator("#device-details")).to_contain_text("Discovered since")
    page.get_by_role("button", name="Actions").click()
    expect(provision).not_to_have_attribute("aria-disabled", "true")
    # The re-rendered page still says it is live (the socket never closed).
    expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
    assert page.evaluate("window.__sameDocument") is True
    assert page.errors == []
    page.screenshot(path=str(ARTIFACTS / "device-page-live.png"), full_page=True)
