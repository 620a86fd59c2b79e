"""The images part of the REST API: upload (multipart), list, detail, delete when unused;
the same checks and sentences as the widget; any storage backend."""

import io

import pytest
from django.core.files.storage import storages
from django.urls import reverse
from rest_framework.test import APIClient

from firmware import tokens
from firmware.formats import fgfw_image
from firmware.models import FirmwareImage
from portal.choices import AuditOutcome, Role
from portal.models import AuditEntry
from tests.factories import (
    api_client as api,
)
from tests.factories import (
    make_device_type,
    make_firmware_image,
    make_member,
    make_organization,
    make_rollout,
)
from tests.test_firmware_upload import stored_files

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("firmware_storage")]


@pytest.fixture
def org():
    return make_organization()


@pytest.fixture
def sensor():
    return make_device_type("Room sensor", image_extensions=[".fgfw"])


@pytest.fixture
def manager(org):
    return api(make_member(org, [Role.DEVICE_MANAGER]))


def file(data, name):
    handle = io.BytesIO(data)
    handle.name = name
    return handle


LIST = reverse("api:firmware-image-list")


def test_upload_list_detail_delete(manager, org, sensor, firmware_storage):
    data = fgfw_image("5.0.0", b"payload" * 100)
    response = manager.post(
        LIST,
        {"file": file(data, "sensor-5.0.0.fgfw"), "device_types": ["Room sensor"], "notes": "n"},
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["version"] == "5.0.0" and created["device_types"] == ["Room sensor"]
    assert created["size"] == len(data) and len(created["sha256"]) == 64
    assert created["uploaded_by"] is not None and "file" not in created

    listed = manager.get(LIST).json()
    assert [i["id"] for i in listed["results"]] == [created["id"]]
    detail = reverse("api:firmware-image-detail", args=[created["id"]])
    assert manager.get(detail).json()["sha256"] == created["sha256"]

    assert manager.delete(detail).status_code == 204
    assert not FirmwareImage.objects.exists()
    actions = list(AuditEntry.objects.values_list("action", "outcome"))
    assert ("firmware.upload", AuditOutcome.SUCCESS) in actions
    assert ("firmware.delete", AuditOutcome.SUCCESS) in actions


def test_duplicate_is_409_with_the_existing_image(manager, org, sensor):
    existing = make_firmware_image(org, "1.0.0", device_type=sensor, payload=b"same")
    data = fgfw_image("1.0.0", b"same")
    response = manager.post(LIST, {"file": file(data, "again-1.0.0.fgfw")}, format="multipart")
    assert response.status_code == 409
    assert response.json()["image"]["id"] == existing.pk
    assert "was not stored twice" in response.json()["detail"]


@pytest.mark.parametrize(
    ("name", "data", "fields", "field", "message"),
    [
        ("sensor-1.0.fgfw", b"junk", {}, "file", "not a Fleetgate image"),
        ("sensor-1.0.fgfw", b"", {}, "file", "The file is empty."),
        ("sensor-1.0.exe", fgfw_image("1.0", b"p"), {}, "file", "No device type takes .exe"),
        (
            "sensor-1.0.fgfw",
            fgfw_image("1.0", b"p"),
            {"device_types": ["Toaster"]},
            "device_types",
            "not a valid value",
        ),
    ],
)
def test_bad_input_is_400_with_the_field(
    manager, org, sensor, firmware_storage, name, data, fields, field, message
):
    response = manager.post(LIST, {"file": file(data, name), **fields}, format="multipart")
    assert response.status_code == 400
    assert message in " ".join(response.json()[field]), response.json()
    assert stored_files(firmware_storage) == []


def test_a_multipart_file_name_with_a_path_is_refused_not_cleaned(
    manager, sensor, firmware_storage
):
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            'filename="../../srv/sensor-1.0.fgfw"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + fgfw_image("1.0", b"p")
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = manager.generic(
        "POST", LIST, body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert response.status_code == 400
    assert "folder path" in response.json()["file"][0]
    assert stored_files(firmware_storage) == []


def test_oversized_upload_is_refused_as_it_streams(manager, sensor, settings, firmware_storage):
    settings.FIRMWARE = {**settings.FIRMWARE, "MAX_IMAGE_BYTES": 100 * 1024}
    data = fgfw_image("1.0", bytes(200 * 1024))
    response = manager.post(LIST, {"file": file(data, "big-1.0.fgfw")}, format="multipart")
    assert response.status_code == 400
    assert response.json()["file"] == ["The file is larger than the 100 KiB limit for images."]
    assert stored_files(firmware_storage) == []


def test_session_upload_goes_through_the_same_checks(org, sensor, firmware_storage):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(make_member(org, [Role.ADMINISTRATOR]))
    data = fgfw_image("1.0", b"p")
    response = client.post(LIST, {"file": file(data, "sensor-1.0.fgfw")}, format="multipart")
    assert response.status_code == 403  # no CSRF token
    assert stored_files(firmware_storage) == []


def test_delete_of_an_image_in_use_is_409_with_the_reason(manager, org, sensor):
    image = make_firmware_image(org, "1.0.0", device_type=sensor)
    rollout = make_rollout(org, image, state="paused")
    response = manager.delete(reverse("api:firmware-image-detail", args=[image.pk]))
    assert response.status_code == 409
    assert response.json()["detail"].startswith(f"Rollout {rollout.pk} is loading this image")
    assert FirmwareImage.objects.filter(pk=image.pk).exists()


def test_roles(org, sensor):
    viewer = api(make_member(org, [Role.IOT_MANAGER]))
    image = make_firmware_image(org, "1.0.0", device_type=sensor)
    assert viewer.get(LIST).status_code == 200
    data = fgfw_image("2.0", b"p")
    assert (
        viewer.post(LIST, {"file": file(data, "s-2.0.fgfw")}, format="multipart").status_code == 403
    )
    detail = reverse("api:firmware-image-detail", args=[image.pk])
    assert viewer.delete(detail).status_code == 403


def test_schema_documents_the_image_endpoints(manager):
    schema = manager.get(reverse("api:schema"), HTTP_ACCEPT="application/json").content.decode()
    assert "/api/v1/firmware/images/" in schema and "multipart/form-data" in schema
    assert "/api/v1/firmware/images/{id}/" in schema


def test_any_storage_backend_works(manager, org, sensor, settings, client):
    """In-memory storage: no local path anywhere, upload to download."""
    settings.STORAGES = {
        **settings.STORAGES,
        "firmware": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    data = fgfw_image("7.0", bytes(range(256)) * 1200)
    response = manager.post(LIST, {"file": file(data, "mem-7.0.fgfw")}, format="multipart")
    assert response.status_code == 201, response.json()
    image = FirmwareImage.objects.get()
    assert type(storages["firmware"]).__name__ == "InMemoryStorage"
    assert storages["firmware"].size(image.file.name) == len(data)
    token = tokens.issue(image.pk, "op-1")
    url = reverse("firmware:download", args=[image.pk])
    got = client.get(url, headers={"Authorization": f"Bearer {token}", "Range": "bytes=1000-"})
    assert got.status_code == 206 and b"".join(got.streaming_content) == data[1000:]
