"""The operation id a gateway sees is shown where people look for it.

Gateway logs name operations by their wire id (``<uid hex>-<generation>``,
docs/gateway-protocol.md section 6); the portal showed only its own primary keys, so
nobody could match the two. Now the device page, the failed devices of an operation
and the REST API show it.
"""

import pytest
from django.urls import reverse
from django.utils import timezone

from devices import operations
from devices.ingest import GatewayRef
from devices.lifecycle import Action
from devices.models import Device, Operation
from portal.choices import Role
from tests.factories import make_device, make_gateway, make_license, make_member, make_organization
from tests.test_api import api_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed_op():
    org = make_organization()
    make_license(org, seats=5)
    user = make_member(org, [Role.DEVICE_MANAGER])
    gateway = make_gateway(org, is_online=True, secret="s" * 32)
    device = make_device(org, gateway=gateway)
    bulk, _ = operations.start(
        org, user, Action.PROVISION, Device.objects.filter(pk=device.pk), "1"
    )
    operations.claim_for_dispatch(gateway.id)
    op = Operation.objects.get(bulk=bulk)
    ref = GatewayRef(gateway.id, gateway.uid, org.id, gateway.secret)
    item = {"op": op.wire_id, "ok": False, "code": "rejected", "reason": "no"}
    operations.complete([(ref, [item])], timezone.now())
    return user, bulk, device, op


def test_pages_show_the_wire_id(failed_op, client):
    user, bulk, device, op = failed_op
    client.force_login(user)
    detail = client.get(reverse("devices:operation-detail", args=[bulk.pk])).content.decode()
    assert op.wire_id in detail
    page = client.get(reverse("devices:detail", args=[device.pk])).content.decode()
    assert op.wire_id in page


def test_the_api_shows_the_wire_id(failed_op):
    user, bulk, device, op = failed_op
    api = api_client(user)
    detail = api.get(reverse("api:operation-detail", args=[bulk.pk])).json()
    assert detail["failed_devices"][0]["wire_id"] == op.wire_id
    failures = api.get(reverse("api:operation-failures", args=[bulk.pk])).json()
    assert failures["results"][0]["wire_id"] == op.wire_id
    device_detail = api.get(reverse("api:device-detail", args=[device.pk])).json()
    assert device_detail["recent_operations"][0]["wire_id"] == op.wire_id
