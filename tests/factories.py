"""Small explicit ``make_*`` helpers. Each calls ``full_clean()`` so tests build only valid rows."""

import itertools
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from devices.choices import Protocol
from devices.models import Device, DeviceGroup, DeviceType, Gateway
from portal.models import Membership, Organization

_seq = itertools.count(1)
PASSWORD = "correct-horse-battery-staple"


def _n():
    return next(_seq)


def make_organization(name=None, **fields):
    n = _n()
    org = Organization(name=name or f"Org {n}", slug=fields.pop("slug", f"org-{n}"), **fields)
    org.full_clean()
    org.save()
    return org


def make_user(username=None, *, password=PASSWORD, **fields):
    user = get_user_model()(username=username or f"user{_n()}", **fields)
    user.set_password(password)
    user.full_clean()
    user.save()
    return user


def make_membership(user, organization, roles=()):
    membership = Membership(user=user, organization=organization)
    membership.set_roles(roles)
    membership.full_clean()
    membership.save()
    return membership


def make_member(organization, roles=(), username=None):
    """A user who belongs to ``organization`` with ``roles``; returns the user."""
    user = make_user(username)
    make_membership(user, organization, roles)
    return user


def make_device_type(name=None, protocol=Protocol.BLE, **fields):
    device_type = DeviceType(name=name or f"Type {_n()}", protocol=protocol, **fields)
    device_type.full_clean()
    device_type.save()
    return device_type


def make_gateway(organization, uid=None, **fields):
    n = _n()
    gateway = Gateway(
        organization=organization,
        uid=uid or f"gw-{n}",
        name=fields.pop("name", f"Gateway {n}"),
        **fields,
    )
    gateway.full_clean()
    gateway.save()
    return gateway


def make_group(organization, name=None, **fields):
    group = DeviceGroup(organization=organization, name=name or f"Group {_n()}", **fields)
    group.full_clean()
    group.save()
    return group


def make_device(organization, device_type=None, **fields):
    n = _n()
    device = Device(
        organization=organization,
        device_type=device_type or make_device_type(),
        serial_number=fields.pop("serial_number", f"SN{n:08d}"),
        **fields,
    )
    state = fields.get("state")
    device.full_clean()
    device.save()
    if state:  # tests may start a device anywhere in its lifecycle
        Device.objects.filter(pk=device.pk).update(state=state)
    return device


def make_staff(*organizations, superuser=False, username=None):
    """A Django-admin user: staff with every portal and devices model permission.

    A superuser needs no permissions; a plain staff user belongs to ``organizations``
    (with no role group), which is what scopes what the admin shows them.
    """
    from django.contrib.auth.models import Permission

    user = make_user(username, is_staff=True, is_superuser=superuser)
    if not superuser:
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label__in=["portal", "devices"])
        )
    for organization in organizations:
        make_membership(user, organization)
    return user


def make_devices(organization, count, device_type=None, **fields):
    """``count`` devices checked with ``full_clean()`` and written in one INSERT (list tests)."""
    device_type = device_type or make_device_type()
    devices = []
    for _ in range(count):
        device = Device(
            organization=organization,
            device_type=device_type,
            serial_number=f"SN{_n():08d}",
            **fields,
        )
        device.full_clean()
        devices.append(device)
    return Device.objects.bulk_create(devices)


def make_license(organization, seats=10, *, valid_from=None, valid_until=None):
    """A stored license made from a genuinely signed file, as an upload would store it."""
    from licensing import signing
    from licensing.keys import DEMO_PRIVATE_KEY, DEMO_PUBLIC_KEY
    from licensing.models import License

    valid_from = valid_from or timezone.localdate() - timedelta(days=1)
    valid_until = valid_until or timezone.localdate() + timedelta(days=365)
    data = signing.issue(
        DEMO_PRIVATE_KEY,
        {
            "organization": organization.slug,
            "capacity": seats,
            "valid_from": valid_from,
            "valid_until": valid_until,
        },
    )
    claims = signing.verify(data, DEMO_PUBLIC_KEY, organization=organization.slug, today=valid_from)
    row = License.from_claims(organization, claims, data.decode())
    row.save()
    return row


def make_firmware_image(organization, version="1.2.0", *, device_type=None, payload=None, **form):
    """An image uploaded as the widget would (checked, hashed, stored, audited)."""
    from django.core.files.base import ContentFile

    from firmware.formats import fgfw_image
    from firmware.forms import ImageUploadForm

    device_type = device_type or make_device_type(image_extensions=[".fgfw"])
    data = fgfw_image(version, payload if payload is not None else f"image {version}".encode())
    filename = form.pop("filename", f"sensor-{version}.fgfw")
    upload = ImageUploadForm(
        {"version": version, "device_types": [device_type.pk], **form},
        {"file": ContentFile(data, name=filename)},
        organization=organization,
    )
    image = upload.upload_image(None)
    assert image is not None, upload.errors
    return image


def make_rollout(organization, image, *, total=0, **fields):
    """A rollout of ``image`` (its bulk operation included), checked with ``full_clean()``."""
    from devices.models import BulkOperation
    from firmware.models import Rollout

    bulk = BulkOperation.objects.create(
        organization=organization, kind="load_image", target=str(image), total=total
    )
    rollout = Rollout(
        bulk=bulk,
        organization=organization,
        image=image,
        image_filename=image.filename,
        image_version=image.version,
        image_sha256=image.sha256,
        image_size=image.size,
        **fields,
    )
    rollout.full_clean()
    rollout.save()
    return rollout


def make_token(user, **kwargs) -> str:
    """A working API token for ``user``; returns the key (only its digest is stored).

    Marked as used just now: a token's first request records its use (one UPDATE, then
    at most once a minute), which would make query counts differ between calls.
    """
    from portal import tokens

    token, key = tokens.issue(user, **kwargs)
    token.last_used_at = timezone.now()
    token.save(update_fields=["last_used_at"])
    return key


def api_client(user):
    """A REST client that authenticates as ``user`` with a fresh API token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {make_token(user)}")
    return client
