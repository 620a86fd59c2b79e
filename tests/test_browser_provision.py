"""Provisioning from the browser, with every real part running: select devices, read the
preview, confirm, and watch the progress bar and the rows turn green without a reload.
"""

import pytest

from devices.choices import DeviceState as S
from devices.models import BulkOperation, Device
from tests import processes
from tests.browser import ARTIFACTS, TIMEOUT_MS
from tests.factories import PASSWORD
from tests.test_browser_live import Portal, page  # noqa: F401  (fixture)
from tests.test_provisioning_e2e import gateways, site, worker  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect


@pytest.fixture
def portal():
    server = Portal(processes.database_url().removeprefix("sqlite:///"))
    if not processes.database_url().startswith("sqlite"):
        pytest.skip("the server subprocess shares the test database as a SQLite file")
    server.start()
    yield server
    server.stop()


def test_provision_selected_devices_with_live_progress(page, portal, site, gateways, worker):  # noqa: F811
    page.goto(f"{portal.url}/accounts/login/")
    page.get_by_label("Username").fill(site["user"].username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    devices = page.locator("#widget-devices")
    expect(devices.locator("#devices-results tbody tr")).to_have_count(25, timeout=TIMEOUT_MS)
    expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")

    devices.get_by_label("Select all devices on this page").check()
    devices.get_by_role("button", name="Actions", exact=True).click()
    page.get_by_role("menuitem", name="Provision selected…", exact=True).click()
    dialog = page.locator("dialog[open]")
    expect(dialog.locator(".preview-count")).to_have_text("25", timeout=TIMEOUT_MS)
    expect(dialog).to_contain_text("Seats left afterwards")
    expect(dialog).to_contain_text("Gateways involved")
    page.evaluate("window.__sameDocument = true")
    dialog.get_by_role("button", name="Provision 25 devices").click()

    expect(page.locator("#toasts")).to_contain_text("Provisioning 25 devices.", timeout=TIMEOUT_MS)
    bulk = BulkOperation.objects.get()
    row = page.locator(f"#bulk-{bulk.pk}")
    expect(row.locator(".bulk-done")).to_have_text("25", timeout=30_000)
    expect(devices.locator(".device-state[data-state='provisioned']")).to_have_count(
        25, timeout=TIMEOUT_MS
    )
    assert page.evaluate("window.__sameDocument") is True
    assert Device.objects.filter(state=S.PROVISIONED).count() == 25
    assert page.errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-provisioned.png"), full_page=True)
