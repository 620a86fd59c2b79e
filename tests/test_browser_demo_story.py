"""The README's story, on the demo's own data, with every real part running: the demo
seed, the portal (daphne), an RQ worker, the reconciler, the bridge and the demo fleet's
simulated gateways (``python -m gateway simulate --fleet``) — so the demo can never
again drift from its gateways without this failing.

Log in as admin, select a group, Provision All: every row turns green and no operation
fails. Then import the demo's enrollment list as written and watch the batch finish
live; then deprovision, reprovision and delete seeded devices through the same gateways.

Everything runs on a private Mosquitto: the demo's gateway UIDs are fixed, and a
``make demo`` on the shared broker must not meet this test's gateways.
"""

import io
import json
import re
import signal
import subprocess
import time

import pytest
from django.core.management import call_command

from devices.choices import DeviceState as S
from devices.models import BulkOperation, Device, DeviceEvent, DeviceGroup, Gateway, Operation
from enrollment.models import EnrollmentRecord, EnrollmentStatus
from gateway import fleet
from portal.models import Organization
from tests import processes
from tests.factories import PASSWORD
from tests.gateway.portal_double import free_port, start_broker
from tests.test_browser_dashboard import ARTIFACTS
from tests.test_browser_live import Portal, page  # noqa: F401  (fixture)
from tests.test_provisioning_faults import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

LATENCY_MS = 50  # per device on the simulated link (the demo uses 300)


class DemoStack:
    """What ``make demo`` starts, on the test database and a broker of its own."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.port = free_port()
        self.broker = start_broker(self.port, tmp_path)
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.environ = {"MQTT_URL": self.url, "LOG_LEVEL": "INFO"}
        self.procs: dict[str, subprocess.Popen] = {}
        self.portal = None

    def log(self, name):
        return self.dir / f"{name}.log"

    def start(self, name, starter, *args, **kwargs):
        with open(self.log(name), "ab") as log:
            self.procs[name] = starter(*args, stdout=log, stderr=subprocess.STDOUT, **kwargs)

    def up(self, secrets_file):
        self.start("bridge", processes.bridge, self.environ)
        wait_until(
            lambda: "Bridge connected" in self.log("bridge").read_text(),
            30,
            "the bridge to subscribe",
            lambda: self.log("bridge").read_text()[-2000:],
        )
        time.sleep(0.3)  # the SUBSCRIBE is in flight right after CONNACK
        self.start("worker", processes.worker, self.environ)
        self.start("reconciler", processes.reconciler, self.environ)
        self.start(
            "gateways",
            processes.start,
            "-m",
            "gateway",
            "simulate",
            "--fleet",
            "--secrets",
            str(secrets_file),
            "--broker",
            self.url,
            "--events-per-s",
            "2",
            "--latency-ms",
            str(LATENCY_MS),
            "--state-dir",
            str(self.dir / "gateway-sim"),
        )
        self.portal = Portal(processes.database_url().removeprefix("sqlite:///"))
        self.portal.env.update(self.environ)
        self.portal.start()

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}:\n{self.log(name).read_text()[-1500:]}" for name in self.procs
        )

    def down(self):
        if self.portal:
            self.portal.stop()
        for name in ("gateways", "bridge", "worker", "reconciler"):
            processes.stop(self.procs.get(name))
        self.broker.terminate()
        self.broker.wait(10)


@pytest.fixture
def demo(tmp_path):
    if not processes.database_url().startswith("sqlite"):
        pytest.skip("the portal subprocess shares the test database as a SQLite file")
    call_command("seed_demo", password=PASSWORD, stdout=io.StringIO())
    secrets_file = tmp_path / "sim-secrets.json"
    call_command(
        "gateway_secrets", organization=["demo", "other"], out=secrets_file, stdout=io.StringIO()
    )
    stack = DemoStack(tmp_path)
    try:
        stack.up(secrets_file)
        wait_until(
            lambda: Gateway.objects.filter(is_online=True).count() == Gateway.objects.count(),
            30,
            "every demo gateway to come online",
            stack.logs,
        )
        yield stack
    finally:
        stack.down()


def finished(bulk, timeout=60, stack=None):
    def done():
        bulk.refresh_from_db()
        return not bulk.is_running

    wait_until(done, timeout, f"{bulk} to finish", stack.logs if stack else (lambda: ""))
    return bulk


def failures():
    return list(Operation.objects.exclude(state="done").values_list("kind", "state", "error")[:5])


def choose(tab, row, button, item):
    """Open a row's menu and choose ``item``. A widget re-rendered by the action before
    (its groups, its rows) replaces the menu under the pointer: wait for the page to
    settle, and open the new menu once more if that happened."""
    for attempt in (1, 2, 3):
        tab.wait_for_load_state("networkidle")
        row.get_by_role("button", name=button).click()
        try:
            row.get_by_role("menuitem", name=item, exact=True).click(timeout=5_000)
            return
        except playwright_sync.TimeoutError:
            if attempt == 3:
                raise


def show_group(tab, group):
    """The group's "Show its devices". It filters the Devices widget in place once that has
    loaded (before, it is a plain link to the Devices page): look at the list first."""
    expect(tab.locator("[data-widget='devices'] #devices-results tbody tr").first).to_be_visible()
    row = tab.locator(f"[data-widget='groups'] [data-group-id='{group.pk}']")
    choose(tab, row, f"Actions for group {group.name}", "Show its devices")
    return row


def group_action(tab, group, verb):
    """``verb`` ("Provision", ...) all of ``group``'s devices from its row menu; the bulk
    operation it started."""
    before = set(BulkOperation.objects.values_list("pk", flat=True))
    row = show_group(tab, group)
    choose(tab, row, f"Actions for group {group.name}", f"{verb} all devices…")
    dialog = tab.locator("dialog[open]")
    dialog.get_by_role("button", name=re.compile(f"^{verb} \\d+ devices?$")).click()
    expect(tab.locator("dialog[open]")).to_have_count(0)
    return BulkOperation.objects.exclude(pk__in=before).get()


def test_the_readme_story_on_the_demo_seed(page, demo):  # noqa: F811
    org = Organization.objects.get(slug="demo")
    floor = DeviceGroup.objects.get(organization=org, name="Floor 1")
    members = floor.devices.count()
    to_provision = floor.devices.exclude(state=S.PROVISIONED).count()
    assert to_provision > 0

    # -- log in as admin, select a group, Provision All -----------------------------------
    page.goto(f"{demo.portal.url}/accounts/login/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
    devices = page.locator("[data-widget='devices']")
    row = show_group(page, floor)
    expect(devices.locator("#devices-results tbody tr")).to_have_count(min(members, 25))
    choose(page, row, "Actions for group Floor 1", "Provision all devices…")
    dialog = page.locator("dialog[open]")
    expect(dialog.locator(".preview-count")).to_have_text(str(to_provision))
    page.evaluate("window.__sameDocument = true")
    started = time.monotonic()
    dialog.get_by_role("button", name=f"Provision {to_provision} devices").click()

    # -- every row turns green, without a reload; no operation fails -----------------------
    green = devices.locator("#devices-results tbody .device-state[data-state='provisioned']")
    expect(green).to_have_count(min(members, 25), timeout=60_000)
    bulk = finished(BulkOperation.objects.get(), stack=demo)
    took = time.monotonic() - started
    assert (bulk.done, bulk.failed, bulk.cancelled) == (to_provision, 0, 0), failures()
    assert set(floor.devices.values_list("state", flat=True)) == {S.PROVISIONED}
    assert page.evaluate("window.__sameDocument") is True
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo-story-provisioned.png"), full_page=True)
    print(f"Provision All of {floor.name}: {to_provision} devices in {took:.1f} s")

    # -- the live events come from devices in the list -------------------------------------
    wait_until(lambda: DeviceEvent.objects.count() > 10, 30, "the gateways' events")
    assert not DeviceEvent.objects.filter(device=None).exists()

    # -- the demo's enrollment list imports as written, and finishes live ---------------------
    listing = demo.dir / "demo-enroll.csv"
    call_command(
        "simulated_keys",
        organization="demo",
        out=str(listing),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    rows = fleet.DEMO.gateways * fleet.DEMO.new_per_gateway
    page.goto(f"{demo.portal.url}/enrollment/batch/")
    page.get_by_label("File").set_input_files(str(listing))
    page.get_by_role("button", name="Check the list").click()
    expect(page.locator(".batch-valid")).to_have_text(f"{rows} valid")
    expect(page.locator(".batch-invalid")).to_have_text("0 refused")
    page.evaluate("window.__sameDocument = true")
    page.get_by_role("button", name=f"Enroll {rows} devices").click()
    progress = page.locator("#batch-progress .batch-progress-state")
    expect(progress).to_have_attribute("data-total", str(rows))
    expect(progress).to_have_attribute("data-done", str(rows), timeout=60_000)
    expect(progress).to_have_attribute("data-failed", "0")
    assert page.evaluate("window.__sameDocument") is True
    page.screenshot(path=str(ARTIFACTS / "demo-story-enrolled.png"), full_page=True)
    assert EnrollmentRecord.objects.filter(status=EnrollmentStatus.DONE).count() == rows
    enrolled = Device.objects.filter(enrollments__isnull=False).distinct()
    assert enrolled.filter(state=S.PROVISIONED).count() == rows
    assert not enrolled.filter(name="").exists()  # names and locations from the list

    # -- deprovision, provision again, reprovision a group, and delete a device -------------
    page.goto(f"{demo.portal.url}/")
    lobby = DeviceGroup.objects.get(organization=org, name="Lobby")
    for verb in ("Deprovision", "Provision", "Reprovision"):
        bulk = group_action(page, lobby, verb)
        bulk = finished(bulk, stack=demo)
        assert bulk.failed == 0 and bulk.done == bulk.total > 0, failures()
    device = lobby.devices.filter(state=S.PROVISIONED).order_by("serial_number").first()
    show_group(page, lobby)
    row = page.locator(f"[data-widget='devices'] [data-device-id='{device.pk}']")
    choose(page, row, f"Actions for {device.serial_number}", "Delete (unenroll)…")
    page.locator("dialog[open]").get_by_role("button", name="Delete and unenroll").click()
    expect(row.locator(".device-state")).to_have_attribute("data-state", S.UNENROLLED)
    assert not Operation.objects.exclude(state="done").exists(), failures()
    page.screenshot(path=str(ARTIFACTS / "demo-story-lobby.png"), full_page=True)

    # -- the second organization is consistent: seats, and a gateway that is really there -----
    from licensing import capacity

    other = Organization.objects.get(slug="other")
    usage = capacity.usage(other)
    assert 0 < usage.used <= usage.total
    assert Gateway.objects.get(organization=other).is_online
    print(json.dumps({"provision_all_s": round(took, 1), "devices": to_provision}))


def test_the_gateways_go_offline_when_their_simulator_stops(demo):
    processes.stop(demo.procs["gateways"])
    wait_until(
        lambda: not Gateway.objects.filter(is_online=True).exists(),
        20,
        "the gateways' goodbye",
        demo.logs,
    )


def test_a_killed_simulator_is_offline_by_its_will(demo):
    """No goodbye at all: the broker publishes each gateway's last will."""
    processes.stop(demo.procs["gateways"], signal.SIGKILL)
    wait_until(
        lambda: not Gateway.objects.filter(is_online=True).exists(),
        60,
        "the gateways' last wills",
        demo.logs,
    )
