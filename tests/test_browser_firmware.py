"""The Firmware widget in real Chromium: drop an image file on the drop area, see the
version and type suggested, save it with the progress bar, and find it listed; a bad
file is refused in place. Screenshots at 1280 px and 390 px go to artifacts/."""

import pytest

from firmware.formats import fgfw_image
from firmware.models import FirmwareImage
from tests.browser import ARTIFACTS, TIMEOUT_MS
from tests.factories import make_device_type
from tests.test_browser_dashboard import (  # noqa: F401  (fixtures)
    db_lock,
    inventory,
    log_in,
    page,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("firmware_storage"),
]

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

DROP = """([name, bytes]) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([new Uint8Array(bytes)], name, {type: "application/octet-stream"}));
  const zone = document.getElementById("image-drop-zone");
  for (const kind of ["dragenter", "dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(kind, {bubbles: true, cancelable: true, dataTransfer: transfer}));
  }
}"""


def drop(browser_page, name, data):
    browser_page.evaluate(DROP, [name, list(data)])


@pytest.fixture
def sensor(db_lock):  # noqa: F811
    with db_lock:
        make_device_type("Room sensor", image_extensions=[".fgfw", ".hex"])
        make_device_type("LON Device", image_extensions=[".apb", ".ndl", ".nx", ".nxi"])


def test_drop_an_image_save_it_and_see_it_listed(page, live_server, db_lock, inventory, sensor):  # noqa: F811
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, live_server, "devmgr")
    widget = page.locator("#widget-firmware")
    widget.scroll_into_view_if_needed()
    expect(widget.get_by_text("Drop new image file here")).to_be_visible(timeout=TIMEOUT_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    expect(widget.locator(".empty-row")).to_contain_text("No firmware images yet.")
    expect(widget.get_by_label("Version")).to_be_hidden()  # until a file is chosen
    widget.screenshot(path=str(ARTIFACTS / "firmware-widget-empty-1280.png"))

    data = fgfw_image("2.4.1", bytes(range(256)) * 800)
    drop(page, "room-sensor-2.4.1.fgfw", data)
    expect(widget.locator("[data-drop-file]")).to_contain_text("room-sensor-2.4.1.fgfw")
    expect(widget.get_by_label("Version")).to_have_value("2.4.1")
    expect(widget.get_by_label("Room sensor (.fgfw, .hex)")).to_be_checked()
    expect(widget.get_by_label("LON Device (.apb, .ndl, .nx, .nxi)")).not_to_be_checked()
    widget.get_by_label("Release notes").fill("Faster reporting.")
    widget.screenshot(path=str(ARTIFACTS / "firmware-widget-dropped-1280.png"))

    widget.get_by_role("button", name="Save image").click()
    row = widget.locator(".image-row", has_text="room-sensor-2.4.1.fgfw")
    expect(row).to_be_visible(timeout=TIMEOUT_MS)
    expect(row.locator(".image-version")).to_have_text("2.4.1")
    expect(row).to_contain_text("Room sensor")
    expect(widget.locator(".message.success")).to_contain_text("uploaded")
    expect(page.locator("#widget-firmware-count")).to_have_text("1")
    with db_lock:
        image = FirmwareImage.objects.get()
        assert image.size == len(data) and image.notes == "Faster reporting."

    # The same bytes again: said so, not stored twice; a file that is not an image:
    # refused in place, with the reason next to the drop area.
    drop(page, "again-2.4.1.fgfw", data)
    widget.get_by_role("button", name="Save image").click()
    expect(widget.locator(".drop-field .form-errors")).to_contain_text("was not stored twice")
    drop(page, "notes-1.0.fgfw", b"just some text")
    widget.get_by_role("button", name="Save image").click()
    expect(widget.locator(".drop-field .form-errors")).to_contain_text("not a Fleetgate image")
    with db_lock:
        assert FirmwareImage.objects.count() == 1
    assert page.errors == []

    widget.screenshot(path=str(ARTIFACTS / "firmware-widget-1280.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    widget.scroll_into_view_if_needed()
    widget.screenshot(path=str(ARTIFACTS / "firmware-widget-390.png"))
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways at 390 px ({width} px wide)"

    # Delete, from the row's Action menu, after a confirmation.
    widget.get_by_role("button", name="Actions for room-sensor-2.4.1.fgfw").click()
    page.get_by_role("menuitem", name="Delete image…").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("Delete the image “room-sensor-2.4.1.fgfw”, version 2.4.1?")
    dialog.get_by_role("button", name="Delete image").click()
    expect(page.locator("#toasts")).to_contain_text("deleted", timeout=TIMEOUT_MS)
    expect(widget.locator(".image-row")).to_have_count(0, timeout=TIMEOUT_MS)
    with db_lock:
        assert not FirmwareImage.objects.exists()
    assert page.errors == []


def test_a_viewer_sees_images_but_no_drop_area(page, live_server, db_lock, inventory, sensor):  # noqa: F811
    from portal.choices import Role
    from tests.factories import make_firmware_image, make_member

    with db_lock:
        make_member(inventory["org"], [Role.IOT_MANAGER], username="viewer")
        make_firmware_image(inventory["org"], "1.0.0", filename="sensor-1.0.0.fgfw")
    log_in(page, live_server, "viewer")
    widget = page.locator("#widget-firmware")
    expect(widget.locator(".image-row")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(widget.get_by_text("Drop new image file here")).to_have_count(0)
    expect(widget.get_by_role("button", name="Actions for sensor-1.0.0.fgfw")).to_have_count(0)
    assert page.errors == []
