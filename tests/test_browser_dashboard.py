"""The dashboard in real headless Chromium (Debian's, driven by Playwright's sync API).

Every step waits for what the user would see (Playwright's auto-waiting ``expect``),
never for a fixed time, and nothing is retried: a flaky run is a bug to fix.
"""

import re
import threading

import pytest

from devices.models import DeviceGroup
from portal.choices import Role
from portal.models import DashboardLayout
from tests.browser import ARTIFACTS, TIMEOUT_MS, chromium_page
from tests.factories import (
    PASSWORD,
    make_device,
    make_device_type,
    make_group,
    make_member,
    make_organization,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect


@pytest.fixture
def inventory():
    org = make_organization("Demo Building Co")
    user = make_member(org, [Role.DEVICE_MANAGER], username="devmgr")
    pump, valve = make_device_type("Pump"), make_device_type("Valve")
    lobby = make_group(org, "Lobby")
    for n in range(1, 6):
        make_device(org, pump, serial_number=f"PMP-{n:04d}", name=f"Boiler pump {n}")
    for n in range(1, 26):
        device = make_device(org, valve, serial_number=f"VLV-{n:04d}", name=f"Radiator valve {n}")
        if n <= 2:
            device.groups.add(lobby)
    return {"org": org, "user": user}


class OneRequestAtATime:
    """WSGI wrapper: the live server handles one request at a time.

    With an in-memory SQLite test database, pytest-django's live server gives every
    request thread the same connection; the dashboard loads its widgets in parallel,
    and concurrent use of one SQLite connection fails at random ("bad parameter or
    other API misuse", a session read that finds nothing). The whole request runs
    under the lock, response iteration and close (request_finished) included.
    """

    def __init__(self, app, lock):
        self.app, self.lock = app, lock

    def __call__(self, environ, start_response):
        with self.lock:
            response = self.app(environ, start_response)
            try:
                return [b"".join(response)]
            finally:
                if hasattr(response, "close"):
                    response.close()


@pytest.fixture
def db_lock(live_server):
    """Serialize the live server's requests; the test takes the same lock for its queries."""
    lock = threading.Lock()
    server = live_server.thread.httpd
    app = server.get_app()
    server.set_app(OneRequestAtATime(app, lock))
    try:
        yield lock
    finally:
        server.set_app(app)


@pytest.fixture
def page(live_server, db_lock, monkeypatch):
    """A logged-out Chromium page on the live server; the test's own queries and the
    server's requests take turns through ``db_lock``."""
    with chromium_page(monkeypatch) as page:
        yield page


def log_in(page, live_server, username):
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#devices-results tbody tr").first).to_be_visible(timeout=TIMEOUT_MS)


def test_search_select_and_create_a_group_from_the_selection(page, live_server, db_lock, inventory):
    log_in(page, live_server, "devmgr")
    devices = page.locator("#widget-devices")
    rows = devices.locator("#devices-results tbody tr")
    expect(page.locator("#widget-devices-count")).to_have_text("30", timeout=TIMEOUT_MS)
    expect(rows).to_have_count(25, timeout=TIMEOUT_MS)

    # Search: the results swap in place, the count in the card header follows.
    devices.get_by_label("Search devices").fill("pump")
    expect(rows).to_have_count(5, timeout=TIMEOUT_MS)
    expect(page.locator("#widget-devices-count")).to_have_text("5", timeout=TIMEOUT_MS)
    expect(devices.locator(".chip")).to_contain_text("pump", timeout=TIMEOUT_MS)

    # Select all on the page, then leave one out.
    devices.get_by_label("Select all devices on this page").check()
    devices.get_by_label("Select PMP-0005").uncheck()
    expect(devices.locator("[data-selection-count]")).to_have_text("4 selected", timeout=TIMEOUT_MS)

    # The selection's Action menu → a dialog that previews the selection.
    devices.get_by_role("button", name="Actions", exact=True).click()
    page.get_by_role("menuitem", name="New group from selection…").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("4 devices selected", timeout=TIMEOUT_MS)
    dialog.get_by_label("Name").fill("Pumps")
    dialog.get_by_role("button", name="Create group").click()

    # The dialog closes, a status message says what happened, both widgets re-render.
    expect(page.locator("dialog")).to_have_count(0, timeout=TIMEOUT_MS)
    expect(page.locator("#toasts")).to_contain_text(
        "Created group “Pumps” with 4 devices.", timeout=TIMEOUT_MS
    )
    group_row = page.locator("#groups-widget tbody tr", has_text="Pumps")
    expect(group_row.locator(".group-count")).to_have_text("4", timeout=TIMEOUT_MS)
    expect(page.locator("#widget-groups-count")).to_have_text("2", timeout=TIMEOUT_MS)
    expect(devices.locator(".tag", has_text="Pumps")).to_have_count(4, timeout=TIMEOUT_MS)

    with db_lock:
        group = DeviceGroup.objects.get(organization=inventory["org"], name="Pumps")
        serials = set(group.devices.values_list("serial_number", flat=True))
    assert serials == {
        "PMP-0001",
        "PMP-0002",
        "PMP-0003",
        "PMP-0004",
    }
    assert page.errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-group-from-selection.png"), full_page=True)


def test_collapse_and_rearrange_are_remembered(page, live_server, db_lock, inventory):
    log_in(page, live_server, "devmgr")
    groups_card = page.locator("#widget-groups")
    expect(page.locator("#groups-widget")).to_be_visible(timeout=TIMEOUT_MS)

    with page.expect_response("**/dashboard/layout/") as saved:
        groups_card.get_by_role("button", name="Show or hide Groups").click()
    assert saved.value.ok
    expect(groups_card.locator(".card-body")).to_be_hidden(timeout=TIMEOUT_MS)
    with page.expect_response("**/dashboard/layout/") as saved:
        groups_card.get_by_role("button", name="Move Groups earlier").click()
    assert saved.value.ok
    # dashboard.js re-packs at once: alone before a wide card, it takes the whole row.
    expect(groups_card).to_have_class(re.compile(r"\bis-stretched\b"), timeout=TIMEOUT_MS)

    with db_lock:
        layout = DashboardLayout.objects.get(user=inventory["user"]).layout
    assert "groups" in layout["collapsed"] and "devices" not in layout["collapsed"]
    assert layout["order"].index("groups") < layout["order"].index("devices")

    page.reload()
    keys = page.locator("#dashboard > .widget")
    expect(keys.first).to_have_attribute("data-widget", "groups", timeout=TIMEOUT_MS)
    expect(groups_card).to_have_class(re.compile(r"\bis-collapsed\b"), timeout=TIMEOUT_MS)
    # Moved first, before the wide Devices card, the half-width card takes the whole row.
    expect(groups_card).to_have_class(re.compile(r"\bis-stretched\b"), timeout=TIMEOUT_MS)
    # A collapsed card loads its body only when opened.
    expect(page.locator("#groups-widget")).to_have_count(0)
    groups_card.get_by_role("button", name="Show or hide Groups").click()
    expect(page.locator("#groups-widget")).to_be_visible(timeout=TIMEOUT_MS)
    assert page.errors == []
