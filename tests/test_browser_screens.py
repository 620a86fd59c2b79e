"""The portal's screens as a person sees them (issue 9, points 2–7), in real Chromium.

Screenshots of the dashboard at 1440, 1280, 1024 and 390 px go to artifacts/ (look at
them); every widget's table must fit its card at each width. Then: failures in their
own colour, rows kept in view after an action, the device page, refusals with their
reason, the error pages, and an axe-core audit (WCAG 2.1 A and AA) of every page.
"""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from devices.choices import DeviceState
from devices.models import BulkOperation, DeviceEvent, Operation, OperationState
from enrollment.models import EnrollmentRecord, EnrollmentStatus
from portal.choices import Role
from portal.models import AuditEntry
from tests.factories import (
    PASSWORD,
    make_device,
    make_device_type,
    make_gateway,
    make_group,
    make_license,
    make_member,
    make_organization,
)
from tests.test_browser_dashboard import (  # noqa: F401  (fixtures)
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    OneRequestAtATime,
    db_lock,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect
expect.set_options(timeout=TIMEOUT_MS)

WIDTHS = (1440, 1280, 1024, 390)
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture
def browser(live_server, db_lock, monkeypatch):  # noqa: F811
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, width=1440, height=1000):
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    return page


def log_in(page, live_server, username):
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/")


def wait_for_widgets(page):
    """Every open widget has swapped its body in (no "Loading …" placeholder left)."""
    expect(page.locator(".widget:not(.is-collapsed) .card-body .loading")).to_have_count(0)
    expect(page.locator("#devices-results tbody tr").first).to_be_visible()


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


# Widgets whose table (or any other part) reaches past their card, as text.
OVERFLOWS = """() => Array.from(document.querySelectorAll(".widget")).flatMap((card) => {
  const box = card.getBoundingClientRect();
  const found = [];
  card.querySelectorAll(".table-wrap").forEach((wrap) => {
    if (wrap.scrollWidth > wrap.clientWidth + 1)
      found.push(card.dataset.widget + ": table " + wrap.scrollWidth + " px in " + wrap.clientWidth);
  });
  card.querySelectorAll(".card-body *").forEach((el) => {
    const r = el.getBoundingClientRect();
    if (r.width > 1 && r.right > box.right + 1 && !el.closest(".table-wrap, [popover], .visually-hidden, .visually-hidden-focusable"))
      found.push(card.dataset.widget + ": " + el.tagName.toLowerCase() + "." + el.className + " ends at " + Math.round(r.right) + ", the card at " + Math.round(box.right));
  });
  return found;
})"""


@pytest.fixture
def building():
    """An organization with the demo's shapes: long names, failures, events, enrollments."""
    org = make_organization("Demo Building Co")
    admin = make_member(org, [Role.ADMINISTRATOR], username="admin")
    make_member(org, [], username="viewer")
    make_license(org, seats=500)
    ble = make_device_type("BLE Mesh Node")
    lon = make_device_type("LON Device")
    gateways = [
        make_gateway(
            org,
            f"demo-gw-{n:02d}",
            name=f"Gateway {n:02d} (Floor {n})",
            is_online=n < 4,
            last_seen=timezone.now() - timedelta(seconds=20 * n),
        )
        for n in range(1, 6)
    ]
    floors = [
        make_group(org, f"Floor {n}", description=f"Every device on floor {n}.") for n in (1, 2)
    ]
    states = [DeviceState.DISCOVERED, DeviceState.PROVISIONED, DeviceState.FAILED]
    devices = []
    for n in range(1, 41):
        device = make_device(
            org,
            ble if n % 3 else lon,
            serial_number=f"BLE-{n:07d}",
            name=f"Floor {n % 4 + 1} – Presence sensor {n}",
            hardware_id=f"02:00:01:00:00:{n:02X}",
            gateway=gateways[n % 5],
            location=f"Floor {n % 4 + 1}, room {n:03d}",
            state=states[n % 3],
        )
        if n <= 20:
            device.groups.add(floors[n % 2])
        devices.append(device)
    failed = [d for d in devices if d.pk and n_of(d) % 3 == 2]
    all_failed = bulk(org, admin, "provision", "6 selected devices", failed[:6], failed=6)
    bulk(org, admin, "deprovision", "group Floor 2", devices[:7], done=4, failed=2, cancelled=1)
    bulk(org, admin, "provision", "group Floor 1", devices[10:20], done=5, failed=2)
    now = timezone.now()
    DeviceEvent.objects.bulk_create(
        DeviceEvent(
            organization=org,
            gateway=devices[n].gateway,
            device=devices[n],
            kind=("alarm", "state", "telemetry")[n % 3],
            message=("battery low (12 %)", "door opened", "temperature 21.4 °C")[n % 3],
            occurred_at=now - timedelta(seconds=7 * n),
        )
        for n in range(30)
    )
    for n, status in enumerate(EnrollmentStatus.values):
        EnrollmentRecord.objects.create(
            organization=org,
            serial_number=f"ENR-{n:05d}",
            access_key="k" * 16,
            device_type=ble,
            gateway=gateways[0],
            status=status,
            reason="wrong key" if status == EnrollmentStatus.FAILED else "",
        )
    return {"org": org, "devices": devices, "all_failed": all_failed, "gateways": gateways}


def n_of(device):
    return int(device.serial_number.split("-")[1])


def bulk(org, user, kind, target, devices, done=0, failed=0, cancelled=0):
    """A bulk operation with its per-device operations in the given outcomes."""
    now = timezone.now()
    operation = BulkOperation.objects.create(
        organization=org,
        kind=kind,
        target=target,
        created_by=user,
        total=len(devices),
        done=done,
        failed=failed,
        cancelled=cancelled,
        finished_at=now if done + failed + cancelled == len(devices) else None,
    )
    outcomes = (
        [OperationState.DONE] * done
        + [OperationState.FAILED] * failed
        + [OperationState.CANCELLED] * cancelled
    )
    outcomes += [OperationState.QUEUED] * (len(devices) - len(outcomes))
    Operation.objects.bulk_create(
        Operation(
            organization=org,
            bulk=operation,
            device=device,
            gateway=device.gateway,
            kind=kind,
            state=state,
            from_state=DeviceState.DISCOVERED,
            next_attempt_at=now,
            expires_at=now + timedelta(days=1),
            error=f"no device {device.serial_number} on this gateway"
            if state == OperationState.FAILED
            else "",
            finished_at=now if state != OperationState.QUEUED else None,
        )
        for device, state in zip(devices, outcomes, strict=True)
    )
    return operation


# --- 2. a dashboard that fits ------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_the_dashboard_fits_at_every_width(browser, live_server, building, width):
    page = new_page(browser, width=width)
    log_in(page, live_server, "admin")
    wait_for_widgets(page)
    shot(page, f"dashboard-{width}.png")
    assert page.evaluate(OVERFLOWS) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    nav = page.get_by_role("navigation", name="Main")
    if width < 900:
        # On a phone the links fold into the Menu button.
        expect(nav).to_be_hidden()
        page.get_by_role("button", name="Menu").click()
        expect(nav).to_be_visible()
        shot(page, f"dashboard-{width}-menu.png")
    else:
        # Two half-width widgets share a row: Groups beside Operations.
        groups = page.locator("#widget-groups").bounding_box()
        operations = page.locator("#widget-operations").bounding_box()
        assert groups["y"] == operations["y"] and groups["x"] < operations["x"]
    for area in ("Devices", "Enrollment", "Operations", "Gateways", "Events", "Licenses"):
        expect(nav.get_by_role("link", name=area, exact=True)).to_be_attached()
    expect(nav.get_by_role("link", name="Members")).to_be_attached()
    expect(nav.get_by_role("link", name="API docs")).to_be_attached()
    # The account's own pages and Log out are in the menu under the user's name.
    page.get_by_role("button", name=re.compile(r"^admin")).click()
    for item in ("Invitations", "API tokens", "Log out"):
        expect(page.get_by_role("menuitem", name=item)).to_be_visible()
    assert page.errors == []


def test_times_are_relative_with_the_exact_time_on_hover(browser, live_server, building):
    page = new_page(browser)
    page.clock.install()  # the page's clock, moved on by hand below
    log_in(page, live_server, "admin")
    wait_for_widgets(page)
    gateway = building["gateways"][1]  # last heard from 40 s before the page was made
    seen = page.locator(f"#gateway-{gateway.pk} .gateway-last-seen time")
    expect(seen).to_have_text(re.compile(r"^\d+ s ago$"))
    expect(seen).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"))
    expect(seen).to_have_attribute("title", re.compile(r"\d{4}.*\d\d:\d\d:\d\d"))
    # static/js/time.js keeps it fresh: half a minute later it reads "1 min ago".
    page.clock.fast_forward(30_000)
    expect(seen).to_have_text("1 min ago")


# --- 3. failures look like failures ------------------------------------------------------


def legend(bulk_row):
    """The legend's visible items, as a screen reader reads them."""
    items = bulk_row.locator(".legend-item:visible").all_inner_texts()
    return [" ".join(item.split()) for item in items]


def test_a_failed_bulk_operation_is_red_with_a_legend_and_its_reason(
    browser, live_server, building
):
    page = new_page(browser)
    log_in(page, live_server, "admin")
    row = page.locator(f"#bulk-{building['all_failed'].pk}")
    expect(row).to_be_visible()
    assert legend(row) == ["0 done", "6 failed"]
    failed = row.locator('.bulk-seg[data-part="failed"]')
    expect(failed).to_have_attribute("width", "6")
    expect(row.locator('.bulk-seg[data-part="done"]')).to_have_attribute("width", "0")
    assert failed.evaluate("el => getComputedStyle(el).fill") == "rgb(196, 43, 43)"
    expect(row.locator(".bulk-reason")).to_contain_text("on this gateway")
    mixed = page.locator(".bulk", has_text="Deprovision group Floor 2")
    expect(mixed).to_be_visible()
    assert legend(mixed) == ["4 done", "2 failed", "1 cancelled"]
    colours = mixed.locator(".bulk-seg").evaluate_all(
        "els => els.map((el) => getComputedStyle(el).fill)"
    )
    assert len(set(colours)) == 4  # done, failed, cancelled, waiting: four colours
    # The devices list shows a failed device's reason beside its state.
    expect(page.locator("#devices-results .failure-reason").first).to_contain_text(
        "on this gateway"
    )
    expect(page.locator("#widget-operations-count")).to_have_attribute(
        "title", "3 bulk operations, 1 running"
    )


# --- 6. rows you act on stay in view ------------------------------------------------------


def test_rows_acted_on_stay_in_view_dimmed_until_the_filter_changes(
    browser,
    live_server,
    building,
    db_lock,  # noqa: F811
):
    page = new_page(browser)
    log_in(page, live_server, "admin")
    devices = page.locator("#widget-devices")
    devices.locator("select[name=state]").select_option("discovered")
    rows = devices.locator("#devices-results tbody tr")
    expect(page.locator("#widget-devices-count")).to_have_text("13")
    first, second = rows.nth(0), rows.nth(1)
    serials = [first.locator("th").inner_text(), second.locator("th").inner_text()]
    first.locator(".device-check").check()
    second.locator(".device-check").check()
    devices.get_by_role("button", name="Actions", exact=True).click()
    page.get_by_role("menuitem", name="Provision selected…", exact=True).click()
    page.locator("dialog[open]").get_by_role("button", name="Provision 2 devices").click()
    expect(page.locator("dialog")).to_have_count(0)

    kept = devices.locator("tr.is-kept")
    expect(kept).to_have_count(2)
    expect(page.locator("#widget-devices-count")).to_have_text("11")
    for serial in serials:
        row = kept.filter(has_text=serial)
        expect(row).to_contain_text("no longer matches the filter")
        expect(row.locator(".device-state")).to_have_text("Provisioning")
    shot(page, "dashboard-kept-rows.png")

    # A filter of the user's own choosing forgets them.
    devices.locator("select[name=state]").select_option("failed")
    expect(page.locator("#widget-devices-count")).to_have_text("13")
    expect(kept).to_have_count(0)
    assert page.errors == []


# --- 4. the device page --------------------------------------------------------------


@pytest.mark.parametrize("width", (1440, 390))
def test_the_device_page(browser, live_server, building, db_lock, width):  # noqa: F811
    device = building["devices"][1]  # failed, in a group, with operations and events
    page = new_page(browser, width=width)
    log_in(page, live_server, "admin")
    page.goto(f"{live_server.url}/devices/{device.pk}/")
    head = page.locator(".device-head")
    assert head.evaluate("el => el.scrollWidth <= el.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    expect(page.locator(".device-failure")).to_contain_text("on this gateway")
    expect(page.locator("#device-timeline")).to_contain_text("Provision")
    shot(page, f"device-page-{width}.png")

    # Every action of the row menu, and the edit dialog.
    page.get_by_role("button", name="Actions").click()
    items = page.locator("#device-menu [role=menuitem]").all_inner_texts()
    for label in ("Provision…", "Deprovision…", "Reprovision…", "Edit name and location…"):
        assert any(item.startswith(label) for item in items), items
    assert any(item.startswith("Delete (unenroll)…") for item in items)
    page.get_by_role("menuitem", name="Edit name and location…").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Name").fill("Lobby\u0007 bell")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_contain_text("printable characters only")
    dialog.get_by_label("Name").fill("  Lobby   presence  ")
    dialog.get_by_label("Location").fill("Ground floor, above the door")
    dialog.get_by_role("button", name="Save").click()
    expect(page.locator("dialog")).to_have_count(0)
    expect(page.locator("#device-title")).to_have_text("Lobby presence")
    expect(page.locator(".device-subtitle")).to_contain_text("Ground floor, above the door")
    with db_lock:
        device.refresh_from_db()
        entry = AuditEntry.objects.filter(action="device.edit").get()
    assert (device.name, device.location) == ("Lobby presence", "Ground floor, above the door")
    assert entry.detail["changes"]["name"]["to"] == "Lobby presence"
    assert page.errors == []


# --- 5. refusals explain themselves ----------------------------------------------------


def test_a_viewer_sees_refused_actions_with_the_reason(browser, live_server, building):
    device = building["devices"][0]
    page = new_page(browser)
    log_in(page, live_server, "viewer")
    wait_for_widgets(page)
    page.get_by_role("button", name=f"Actions for {device.serial_number}").click()
    provision = page.get_by_role("menuitem", name=re.compile(r"^Provision…"))
    expect(provision).to_have_attribute("aria-disabled", "true")
    expect(provision).to_contain_text("Needs Administrator or Device Manager")
    provision.focus()  # refused, yet reachable by keyboard, and it says why when used
    page.keyboard.press("Enter")
    expect(page.locator("#toasts")).to_contain_text(
        "Provision…: needs Administrator or Device Manager."
    )
    expect(page.locator("dialog")).to_have_count(0)
    refused = page.get_by_role("navigation", name="Main").locator(".topnav-disabled")
    expect(refused.filter(has_text="Members")).to_have_attribute(
        "title", "Members needs Administrator"
    )
    expect(refused.filter(has_text="Audit log")).to_have_attribute(
        "title", "Audit log needs Administrator"
    )
    shot(page, "dashboard-viewer-refusals.png")

    # The server refuses regardless, with the same reason on the portal's 403 page.
    page.goto(f"{live_server.url}/devices/{device.pk}/edit/")
    expect(page.locator("[data-error-sentence]")).to_contain_text(
        "needs Administrator or Device Manager"
    )
    expect(page.get_by_role("link", name="Back to the dashboard")).to_be_visible()
    shot(page, "error-403.png")


def test_error_pages_use_the_portal_layout(browser, live_server, building, monkeypatch):
    page = new_page(browser)
    response = page.goto(f"{live_server.url}/api/v1/docs/")
    assert response.status == 401
    expect(page.get_by_role("heading", name="Log in to try the API")).to_be_visible()
    page.get_by_role("link", name="Log in").click()
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#swagger-ui .info")).to_be_visible()  # back where they wanted to be

    response = page.goto(f"{live_server.url}/devices/987654/")
    assert response.status == 404
    expect(page.locator("[data-error-sentence]")).to_contain_text("another organization")
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    shot(page, "error-404.png")

    def broken(*args, **kwargs):
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr("portal.views.DashboardView.get_context_data", broken)
    response = page.goto(f"{live_server.url}/")
    assert response.status == 500
    expect(page.get_by_role("heading", name="Something went wrong on our side")).to_be_visible()
    expect(page.get_by_role("link", name="Back to the dashboard")).to_be_visible()
    shot(page, "error-500.png")


# --- 7. accessibility: axe-core finds nothing ---------------------------------------


def axe_violations(page):
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(
        page,
        options={"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]},
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(" ".join(node["target"]) for node in v["nodes"][:40])
        for v in results.response["violations"]
    ]


def test_axe_finds_nothing_on_the_portals_pages(browser, live_server, building, monkeypatch):
    device = building["devices"][1]
    page = new_page(browser)
    found = {}

    def audit(name, path=None):
        if path is not None:
            page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        found[name] = axe_violations(page)

    audit("login", "/accounts/login/")
    audit("api docs, logged out", "/api/v1/docs/")
    log_in(page, live_server, "admin")
    wait_for_widgets(page)
    audit("dashboard")
    page.get_by_role("button", name=f"Actions for {device.serial_number}").click()
    audit("dashboard, row menu open")
    page.keyboard.press("Escape")
    for name, path in (
        ("devices", "/devices/"),
        ("groups", "/devices/groups/"),
        ("operations", "/devices/operations/"),
        ("operation", f"/devices/operations/{building['all_failed'].pk}/"),
        ("gateways", "/devices/gateways/"),
        ("events", "/devices/events/"),
        ("enrollment", "/enrollment/"),
        ("licenses", "/licenses/"),
        ("members", "/members/"),
        ("device", f"/devices/{device.pk}/"),
        ("404", "/devices/987654/"),
        ("api docs", "/api/v1/docs/"),
        ("api reference", "/api/v1/redoc/"),
    ):
        audit(name, path)
    page.goto(f"{live_server.url}/devices/{device.pk}/")
    page.get_by_role("button", name="Actions").click()
    page.get_by_role("menuitem", name="Edit name and location…").click()
    expect(page.locator("dialog[open]")).to_be_visible()
    audit("device, edit dialog")
    log_in(page, live_server, "viewer")
    wait_for_widgets(page)
    audit("dashboard as a viewer")
    audit("403", f"/devices/{device.pk}/edit/")
    monkeypatch.setattr("portal.views.DashboardView.get_context_data", _broken)
    audit("500", "/")
    assert {name: v for name, v in found.items() if v} == {}


def _broken(*args, **kwargs):
    raise RuntimeError("broken on purpose")
