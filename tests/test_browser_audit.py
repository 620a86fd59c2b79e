"""The Audit log widget in real headless Chromium, at 1280 and 390 px: filters, pages,
the export download; screenshots into artifacts/."""

import csv
import io
from pathlib import Path

import pytest

from devices.models import BulkOperation
from portal import audit
from portal.choices import Role
from tests.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS
from tests.factories import PASSWORD, make_device, make_gateway, make_member, make_organization
from tests.test_browser_dashboard import OneRequestAtATime

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect


@pytest.fixture
def history():
    """A month of an organization's life, in miniature: 40 entries, bulk operations
    that finished well and badly, and one still running."""
    org = make_organization("Demo Building Co", slug="demo")
    admin = make_member(org, [Role.ADMINISTRATOR], username="admin")
    devmgr = make_member(org, [Role.DEVICE_MANAGER], username="devmgr")
    gateway = make_gateway(org, name="Floor 1")
    pump = make_device(org, gateway=gateway, serial_number="PMP-0001", name="Boiler pump")
    for n in range(12):
        audit.record(org, admin, "group.create", [n], object_type="devicegroup", name=f"Floor {n}")
    audit.record(org, admin, "member.add", [3], object_type="membership", username="devmgr")
    for n in range(1, 25):
        audit.record(
            org,
            devmgr,
            "device.provision",
            [pump.pk] if n == 1 else list(range(10_000, 10_000 + n * 10)),
            object_type="device",
            bulk=n,
            target=f"group “Floor {n % 5}”",
            skipped=0,
        )
        if n < 24:
            closed = BulkOperation(
                pk=n, organization_id=org.pk, kind="provision", total=n * 10, done=n * 10
            )
            if n % 4 == 0:
                closed.done, closed.failed = 0, n * 10
            audit.bulks_finished([closed])
    return org


@pytest.fixture
def browser_page(live_server, monkeypatch):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    import threading

    lock = threading.Lock()
    server = live_server.thread.httpd
    app = server.get_app()
    server.set_app(OneRequestAtATime(app, lock))
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
            server.set_app(app)


def open_page(browser, live_server, width):
    context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#audit-results tbody tr").first).to_be_visible()
    return page


def no_sideways_scroll(page):
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_the_audit_log_at_1280_px(browser_page, live_server, history):
    page = open_page(browser_page, live_server, 1280)
    widget = page.locator("#widget-audit")
    rows = widget.locator("#audit-results tbody tr")
    expect(rows).to_have_count(25)
    expect(rows.first).to_contain_text("not finished yet")  # bulk 24 still runs
    failed = widget.locator("tr", has_text="started").filter(has_text="0 done · 160 failed")
    expect(failed.locator(".badge-red")).to_have_text("Failure")
    ARTIFACTS.mkdir(exist_ok=True)
    widget.scroll_into_view_if_needed()
    widget.screenshot(path=str(ARTIFACTS / "audit-widget-1280.png"))

    # Filter by user: only the member.add and group entries of "admin" remain.
    widget.locator('select[name="user"]').select_option("admin")
    expect(rows).to_have_count(13)
    expect(widget.locator(".chip")).to_contain_text("admin")
    # And by device: the entry naming it.
    widget.locator('select[name="user"]').select_option("")
    widget.get_by_label("Device serial number").fill("PMP-0001")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("device #")

    # The full page, paged down the chain; the export downloads what is filtered.
    page.goto(f"{live_server.url}/audit/")
    table = page.locator("#audit-results tbody tr")
    expect(table).to_have_count(25)
    page.get_by_role("link", name="Older ›").click()
    expect(table).to_have_count(25)
    expect(page).to_have_url(f"{live_server.url}/audit/?before=36")
    page.get_by_role("link", name="« Newest").click()
    expect(table.first).to_have_attribute("data-seq", "60")
    page.screenshot(path=str(ARTIFACTS / "audit-page-1280.png"), full_page=True)
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    rows_out = list(csv.DictReader(io.StringIO(text)))
    assert len(rows_out) == 60 and rows_out[0]["seq"] == "1"
    assert no_sideways_scroll(page)
    assert page.errors == []


def test_the_audit_log_at_390_px(browser_page, live_server, history):
    page = open_page(browser_page, live_server, 390)
    widget = page.locator("#widget-audit")
    widget.scroll_into_view_if_needed()
    expect(widget.locator("#audit-results tbody tr")).to_have_count(25)
    widget.screenshot(path=str(ARTIFACTS / "audit-widget-390.png"))
    assert no_sideways_scroll(page)
    page.goto(f"{live_server.url}/audit/")
    expect(page.locator("#audit-results tbody tr")).to_have_count(25)
    page.screenshot(path=str(ARTIFACTS / "audit-page-390.png"), full_page=False)
    # The table scrolls inside its frame; the page itself never scrolls sideways.
    assert no_sideways_scroll(page)
    assert page.errors == []
