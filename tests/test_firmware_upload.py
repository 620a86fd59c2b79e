"""Uploading firmware images: through the widget, checked, hashed, stored once, audited;
bad input refused with a field error and nothing left in storage."""

import hashlib
import io

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import CommandError, call_command
from django.test.client import encode_multipart
from django.urls import reverse

from firmware import formats, services
from firmware.formats import fgfw_image
from firmware.forms import ImageUploadForm, version_from_filename
from firmware.models import FirmwareImage
from portal.choices import AuditOutcome, Role
from portal.models import AuditEntry
from tests.factories import (
    make_device_type,
    make_firmware_image,
    make_member,
    make_organization,
    make_rollout,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("firmware_storage")]

HEX = b":0300300002337A1E\n:00000001FF\n"  # a valid Intel HEX file


def stored_files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def org():
    return make_organization()


@pytest.fixture
def sensor():
    return make_device_type("Room sensor", image_extensions=[".fgfw", ".hex"])


@pytest.fixture
def lon():
    return make_device_type("LON Device", image_extensions=[".apb", ".ndl", ".nx", ".nxi"])


def upload(org, name, data, user=None, handler=None, **fields):
    form = ImageUploadForm(
        fields, {"file": ContentFile(data, name=name)}, organization=org, upload=handler
    )
    return form, form.upload_image(user)


# -- the happy path ------------------------------------------------------------------


def test_upload_stores_the_file_hash_size_and_what_it_fits(org, sensor, lon, firmware_storage):
    data = fgfw_image("2.4.1", b"x" * 5000)
    user = make_member(org, [Role.DEVICE_MANAGER])
    form, image = upload(org, "sensor-2.4.1.fgfw", data, user, notes="Fixes the alarm.")
    assert image is not None, form.errors
    assert image.sha256 == hashlib.sha256(data).hexdigest() and image.size == len(data)
    assert image.version == "2.4.1"  # from the header: the field was left empty
    assert image.format == "Fleetgate image" and image.notes == "Fixes the alarm."
    assert list(image.device_types.all()) == [sensor]  # every type taking .fgfw: not LON
    assert image.uploaded_by == user
    with storages["firmware"].open(image.file.name) as stored:
        assert stored.read() == data
    assert stored_files(firmware_storage) == [f"{org.pk}/{image.sha256}/sensor-2.4.1.fgfw"]
    entry = AuditEntry.objects.get(action="firmware.upload")
    assert entry.outcome == AuditOutcome.SUCCESS and entry.object_ids == [image.pk]
    assert entry.detail["sha256"] == image.sha256 and entry.detail["device_types"] == [
        "Room sensor"
    ]


def test_lon_images_are_checked_by_extension_size_and_hash_only(org, sensor, lon):
    form, image = upload(org, "vav-controller-3.0.nxi", b"\x00\x01 vendor bytes")
    assert image is not None, form.errors
    assert image.version == "3.0" and list(image.device_types.all()) == [lon]
    assert image.format == "Neuron firmware image"


def test_intel_hex_is_checked_record_by_record(org, sensor):
    form, image = upload(org, "node-1.0.hex", HEX)
    assert image is not None, form.errors
    form, image = upload(org, "node-1.1.hex", HEX.replace(b"1E\n", b"1F\n"))
    assert image is None
    assert form.errors["file"] == ["Not Intel HEX: line 1 fails its checksum."]


@pytest.mark.parametrize(
    ("filename", "version"),
    [
        ("sensor-2.4.1.nxi", "2.4.1"),
        ("fw_v10.2-rc1.hex", "10.2-rc1"),
        ("node.1.0.apb", "1.0"),
        ("firmware.apb", ""),
        ("2024.apb", ""),
    ],
)
def test_version_from_the_file_name(filename, version):
    assert version_from_filename(filename) == version


def test_the_same_bytes_twice_are_one_image(org, sensor, firmware_storage):
    data = fgfw_image("1.0.0", b"same")
    first = upload(org, "a-1.0.0.fgfw", data)[1]
    form, again = upload(org, "b-1.0.0.fgfw", data, notes="again")
    assert again is None and form.duplicate == first
    assert "already image “a-1.0.0.fgfw”, version 1.0.0" in form.errors["file"][0]
    assert FirmwareImage.objects.count() == 1
    assert len(stored_files(firmware_storage)) == 1
    # Another organization's copy is its own image.
    assert upload(make_organization(), "a-1.0.0.fgfw", data)[1] is not None


def test_a_concurrent_duplicate_loses_cleanly_and_leaves_no_file(org, sensor, firmware_storage):
    data = fgfw_image("1.0.0", b"race")
    form = ImageUploadForm(
        {}, {"file": ContentFile(data, name="race-1.0.0.fgfw")}, organization=org
    )
    assert form.is_valid(), form.errors
    winner = make_firmware_image(org, "1.0.0", payload=b"race", device_type=sensor)
    with pytest.raises(services.DuplicateImage) as lost:
        services.store(
            org,
            None,
            form.cleaned_data["file"],
            filename=form.filename,
            inspection=form.inspection,
            version="1.0.0",
            notes="",
            device_types=[sensor],
        )
    assert lost.value.existing == winner
    assert stored_files(firmware_storage) == [f"{org.pk}/{winner.sha256}/sensor-1.0.0.fgfw"]


def test_same_version_with_other_bytes_for_the_same_type_is_refused(org, sensor):
    make_firmware_image(org, "1.0.0", device_type=sensor)
    form, image = upload(org, "other-1.0.0.fgfw", fgfw_image("1.0.0", b"different"))
    assert image is None
    assert "devices could not tell the two apart" in form.errors["version"][0]


# -- bad input: a field error each, nothing stored ------------------------------------


BAD = [
    ("sensor-1.0.bin", fgfw_image("1.0", b"p"), {}, "file", "No device type takes .bin images"),
    ("sensor", fgfw_image("1.0", b"p"), {}, "file", "has no extension"),
    ("sensor-1.0.fgfw", b"not an image at all, just text", {}, "file", "does not start with"),
    ("sensor-1.0.fgfw", b"FGFW", {}, "file", "shorter than a Fleetgate image header"),
    ("sensor-1.0.fgfw", fgfw_image("1.0", b"payload")[:-2], {}, "file", "cut off or padded"),
    (
        "sensor-1.0.fgfw",
        fgfw_image("1.0", b"payload")[:-1] + b"X",
        {},
        "file",
        "does not match its CRC-32",
    ),
    ("node-1.0.hex", b"hello\n", {}, "file", "not a “:…” record"),
    ("node-1.0.hex", HEX.splitlines()[0] + b"\n", {}, "file", "end-of-file record is missing"),
    ("sensor-1.0.fgfw", b"", {}, "file", "The file is empty."),
    ("sensor-1.0.fgfw", fgfw_image("1.0", b"p"), {"version": "2.0"}, "version", "header says"),
    ("firmware.apb", b"bytes", {}, "version", "not in its file name"),
    ("sensor-1.0.fgfw", fgfw_image("1.0", b"p"), {"version": "1\x07"}, "version", "printable"),
]


@pytest.mark.parametrize(
    ("name", "data", "fields", "field", "message"), BAD, ids=[b[4] for b in BAD]
)
def test_bad_input_is_refused_with_a_field_error(
    org, sensor, lon, firmware_storage, name, data, fields, field, message
):
    form, image = upload(org, name, data, **fields)
    assert image is None
    assert message in " ".join(form.errors.get(field, [])), form.errors
    assert FirmwareImage.objects.count() == 0 and stored_files(firmware_storage) == []
    refusal = AuditEntry.objects.get(action="firmware.upload")
    assert refusal.outcome == AuditOutcome.FAILURE and message in refusal.detail["reason"]


def test_a_chosen_type_that_does_not_take_the_extension_is_refused(org, sensor, lon):
    data = fgfw_image("1.0", b"p")
    form, image = upload(org, "sensor-1.0.fgfw", data, device_types=[lon.pk])
    assert image is None
    assert form.errors["device_types"] == [
        "LON Device takes .apb, .ndl, .nx, .nxi images, not .fgfw."
    ]


def test_oversized_file_is_refused(org, sensor, settings, firmware_storage):
    settings.FIRMWARE = {**settings.FIRMWARE, "MAX_IMAGE_BYTES": 1000}
    form, image = upload(org, "big-1.0.fgfw", fgfw_image("1.0", b"p" * 1000))
    assert image is None
    assert form.errors["file"] == ["The file is larger than the 1000 bytes limit for images."]
    assert stored_files(firmware_storage) == []


def test_inspection_streams_in_chunks_never_the_whole_file():
    class Chunked(ContentFile):
        biggest = 0

        def chunks(self, chunk_size=None):
            for chunk in super().chunks(chunk_size):
                Chunked.biggest = max(Chunked.biggest, len(chunk))
                yield chunk

    data = fgfw_image("1.0", bytes(3 * formats.CHUNK))
    result = services.inspect(Chunked(data, name="big-1.0.fgfw"), "big-1.0.fgfw")
    assert result.size == len(data) and result.sha256 == hashlib.sha256(data).hexdigest()
    assert Chunked.biggest == formats.CHUNK


# -- the widget's upload view ---------------------------------------------------------


def post_upload(client, name, data, **fields):
    """A multipart POST with the file name exactly as given (no client-side cleaning)."""
    boundary = "fleetgateboundary"
    body = encode_multipart(boundary, {k: v for k, v in fields.items()})
    part = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + data
        + b"\r\n"
    )
    body = part + body
    return client.post(
        reverse("firmware:upload"),
        body,
        content_type=f"multipart/form-data; boundary={boundary}",
        headers={"HX-Request": "true"},
    )


@pytest.fixture
def manager(org, login):
    return login(make_member(org, [Role.DEVICE_MANAGER]))


def test_widget_upload_lists_the_new_image(manager, org, sensor):
    response = post_upload(manager, "sensor-3.1.0.fgfw", fgfw_image("3.1.0", b"p" * 100))
    body = response.content.decode()
    assert response.status_code == 200, body
    assert "Image “sensor-3.1.0.fgfw” (version 3.1.0) uploaded." in body
    assert 'id="widget-firmware-count" hx-swap-oob="true"' in body
    image = FirmwareImage.objects.get()
    assert f'id="image-{image.pk}"' in body and "Room sensor" in body


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../../etc/sensor-1.0.fgfw", "must not contain a folder path"),
        ("C:\\\\fw\\\\sensor-1.0.fgfw", "must not contain a folder path"),
        ("sensor\x07-1.0.fgfw", "control characters"),
        ("..", "must not start with a dot"),
        (".hidden-1.0.fgfw", "must not start with a dot"),
    ],
)
def test_widget_refuses_names_with_path_parts_or_control_characters(
    manager, org, sensor, firmware_storage, name, message
):
    response = post_upload(manager, name, fgfw_image("1.0", b"p"))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert FirmwareImage.objects.count() == 0 and stored_files(firmware_storage) == []


def test_widget_refuses_an_oversized_upload_while_it_streams(
    manager, org, sensor, settings, firmware_storage
):
    settings.FIRMWARE = {**settings.FIRMWARE, "MAX_IMAGE_BYTES": 200 * 1024}
    response = post_upload(manager, "big-1.0.fgfw", fgfw_image("1.0", bytes(300 * 1024)))
    assert response.status_code == 400
    assert "larger than the 200 KiB limit" in response.content.decode()
    assert stored_files(firmware_storage) == []


def test_widget_upload_needs_the_device_actions_rule(org, sensor, login, firmware_storage):
    viewer = login(make_member(org, [Role.IOT_MANAGER]))
    response = post_upload(viewer, "sensor-1.0.fgfw", fgfw_image("1.0", b"p"))
    assert response.status_code == 403
    assert stored_files(firmware_storage) == []
    body = viewer.get(reverse("firmware:widget"), headers={"HX-Request": "true"}).content
    assert b"Drop new image file here" not in body


def test_widget_upload_checks_the_csrf_token(org, sensor, firmware_storage):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(make_member(org, [Role.ADMINISTRATOR]))
    response = post_upload(client, "sensor-1.0.fgfw", fgfw_image("1.0", b"p"))
    assert response.status_code == 403 and stored_files(firmware_storage) == []


def test_widget_upload_without_javascript_redirects_with_a_message(manager, org, sensor):
    data = {"file": ContentFile(fgfw_image("1.0", b"p"), name="sensor-1.0.fgfw")}
    response = manager.post(reverse("firmware:upload"), data, follow=True)
    assert response.redirect_chain[-1][0] == reverse("firmware:widget")
    assert "Image “sensor-1.0.fgfw” (version 1.0) uploaded." in response.content.decode()


# -- the widget's list and delete -----------------------------------------------------


def test_widget_lists_images_with_a_constant_number_of_queries(
    manager, org, sensor, django_assert_max_num_queries
):
    url = reverse("firmware:widget")
    make_firmware_image(org, "1.0", device_type=sensor)
    with django_assert_max_num_queries(20) as few:
        manager.get(url, headers={"HX-Request": "true"})
    for n in range(2, 12):
        make_firmware_image(org, f"1.{n}", device_type=sensor)
    with django_assert_max_num_queries(len(few.captured_queries)):
        body = manager.get(url, headers={"HX-Request": "true"}).content.decode()
    assert body.count('class="image-row"') == 10 and "Page 1 of 2" in body


def test_delete_removes_row_and_file_and_is_audited(
    manager, org, sensor, firmware_storage, django_capture_on_commit_callbacks
):
    image = make_firmware_image(org, "1.0", device_type=sensor)
    url = reverse("firmware:image-delete", args=[image.pk])
    assert "Delete the image" in manager.get(url, headers={"HX-Request": "true"}).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = manager.post(url, headers={"HX-Request": "true"})
    assert response.status_code == 204 and "firmwareChanged" in response["HX-Trigger"]
    assert not FirmwareImage.objects.exists() and stored_files(firmware_storage) == []
    entry = AuditEntry.objects.get(action="firmware.delete")
    assert entry.outcome == AuditOutcome.SUCCESS and entry.detail["sha256"] == image.sha256


def test_delete_of_an_image_an_active_rollout_loads_is_refused(manager, org, sensor):
    image = make_firmware_image(org, "1.0", device_type=sensor)
    rollout = make_rollout(org, image)
    url = reverse("firmware:image-delete", args=[image.pk])
    body = manager.get(url, headers={"HX-Request": "true"}).content.decode()
    assert f"Rollout {rollout.pk} is loading this image (running)" in body
    response = manager.post(url, headers={"HX-Request": "true"})
    assert (
        response.status_code == 200
        and "can be deleted once the rollout" in response.content.decode()
    )
    assert FirmwareImage.objects.filter(pk=image.pk).exists()
    refusal = AuditEntry.objects.get(action="firmware.delete")
    assert refusal.outcome == AuditOutcome.FAILURE


def test_a_finished_rollout_keeps_its_history_when_the_image_goes(manager, org, sensor):
    image = make_firmware_image(org, "1.0", device_type=sensor)
    rollout = make_rollout(org, image)
    assert rollout.move("finish")
    manager.post(reverse("firmware:image-delete", args=[image.pk]))
    rollout.refresh_from_db()
    assert rollout.image is None
    assert (rollout.image_version, rollout.image_sha256) == ("1.0", image.sha256)


# -- the command ------------------------------------------------------------------------


def test_upload_image_command(org, sensor, tmp_path, firmware_storage):
    path = tmp_path / "sensor-4.0.0.fgfw"
    path.write_bytes(fgfw_image("4.0.0", bytes(600 * 1024)))
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "upload_image",
        str(path),
        organization=org.slug,
        types=["room sensor"],
        notes="From the shell.",
        stdout=out,
        stderr=err,
    )
    image = FirmwareImage.objects.get()
    assert f"Image {image.pk} “sensor-4.0.0.fgfw”, version 4.0.0" in out.getvalue()
    assert image.notes == "From the shell." and list(image.device_types.all()) == [sensor]
    lines = err.getvalue().splitlines()
    assert (
        lines[0].startswith("checking [") and "100%" in [ln for ln in lines if "checking" in ln][-1]
    )
    assert any(ln.startswith("storing  [") and "100%" in ln for ln in lines)

    again = io.StringIO()
    call_command("upload_image", str(path), organization=org.slug, stdout=again, stderr=err)
    assert again.getvalue().startswith(f"Already uploaded: image {image.pk}")
    assert FirmwareImage.objects.count() == 1


def test_upload_image_command_refusals(org, sensor, tmp_path, firmware_storage):
    bad = tmp_path / "sensor-1.0.fgfw"
    bad.write_bytes(b"garbage")
    with pytest.raises(CommandError, match="refused, nothing stored.\n  file: This is not"):
        call_command("upload_image", str(bad), organization=org.slug, stderr=io.StringIO())
    with pytest.raises(CommandError, match="No organization 'nope'"):
        call_command("upload_image", str(bad), organization="nope")
    with pytest.raises(CommandError, match="No device type 'Toaster'"):
        call_command("upload_image", str(bad), organization=org.slug, types=["Toaster"])
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("upload_image", str(tmp_path / "missing.fgfw"), organization=org.slug)
    viewer = make_member(org, [], username="just-looking")
    with pytest.raises(CommandError, match="may not upload images"):
        call_command("upload_image", str(bad), organization=org.slug, user=viewer.username)
    assert stored_files(firmware_storage) == []
