"""The demo's firmware: a device type that takes images, and an image ready to load.

The demo's gateways are simulated (``python -m gateway simulate``); their devices
report the device type ``Simulated sensor`` and firmware ``1.0.0``
(``gateway.drivers.simulated``). ``seed`` makes sure that type exists and accepts
Fleetgate images (``.fgfw``, whose header ``firmware.formats`` defines), and uploads
version 1.1.0 for it, so a new user can load an image right away. Idempotent: the
second run finds the type and the image (the same bytes) and changes nothing.
"""

import hashlib

from django.core.files.base import ContentFile

from devices.choices import Protocol
from devices.models import DeviceType
from firmware import formats
from firmware.forms import ImageUploadForm
from firmware.models import FirmwareImage
from gateway.drivers.simulated import OPTIONS as SIMULATED_OPTIONS

DEVICE_TYPE = SIMULATED_OPTIONS["device_type"][1]  # what simulated devices report
EXTENSION = ".fgfw"
VERSION = "1.1.0"
FILENAME = f"simulated-sensor-{VERSION}{EXTENSION}"
PAYLOAD_BYTES = 256 * 1024
NOTES = "Demo release: faster reporting, fixes the occasional missed alarm after a restart."


def payload() -> bytes:
    """Deterministic bytes (the same image every run, so the seed stays idempotent)."""
    blocks, seed = [], b"fleetgate demo firmware " + VERSION.encode()
    while sum(map(len, blocks)) < PAYLOAD_BYTES:
        seed = hashlib.sha256(seed).digest()
        blocks.append(seed)
    return b"".join(blocks)[:PAYLOAD_BYTES]


def image_bytes() -> bytes:
    return formats.fgfw_image(VERSION, payload())


def ensure_device_type() -> DeviceType:
    device_type, _ = DeviceType.objects.get_or_create(
        name=DEVICE_TYPE,
        defaults={"protocol": Protocol.BLE, "image_extensions": [EXTENSION]},
    )
    if EXTENSION not in device_type.image_extensions:
        device_type.image_extensions = [*device_type.image_extensions, EXTENSION]
        device_type.save(update_fields=["image_extensions"])
    return device_type


def seed(organization) -> FirmwareImage:
    """The simulated type (taking ``.fgfw``) and its image 1.1.0 in ``organization``."""
    device_type = ensure_device_type()
    data = image_bytes()
    existing = FirmwareImage.objects.for_organization(organization).filter(
        sha256=hashlib.sha256(data).hexdigest()
    )
    if image := existing.first():
        return image
    form = ImageUploadForm(
        {"version": VERSION, "notes": NOTES, "device_types": [device_type.pk]},
        {"file": ContentFile(data, name=FILENAME)},
        organization=organization,
    )
    image = form.upload_image(None)
    if image is None:
        raise ValueError(f"The demo image was refused: {form.reason}")
    return image
