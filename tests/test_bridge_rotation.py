"""A rotated gateway secret stops working at once in every running bridge.

The bridge caches gateways' secrets; before, a rotated secret kept verifying for up to
the cache's 30 s. Now the change is announced on Redis after commit and every bridge
forgets the gateway (``devices.gateway_changes``); the cache's TTL is the fallback.
"""

import uuid

import pytest
from django.db import transaction

from devices.models import Device, Gateway
from gateway.protocol import MsgType
from tests.factories import make_gateway, make_organization
from tests.test_bridge import send, wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

OLD, NEW = "old-secret-" + "o" * 20, "new-secret-" + "n" * 20


def discovery(serial):
    return {"devices": [{"serial": serial}]}


def test_a_rotated_secret_is_refused_at_once_and_the_new_one_accepted(bridge, publisher):
    gateway = make_gateway(make_organization(), uid=f"gw-{uuid.uuid4().hex[:12]}", secret=OLD)
    send(publisher, gateway.uid, MsgType.DISCOVERY, discovery("BEFORE-1"), secret=OLD)
    assert wait_for(lambda: Device.objects.filter(serial_number="BEFORE-1").exists())
    heard = bridge.stats["gateway_changes"]

    with transaction.atomic():  # as the Gateways widget rotates it
        gateway.secret = NEW
        gateway.save(update_fields=["secret", "secret_rotated_at"])
    assert wait_for(lambda: bridge.stats["gateway_changes"] > heard, 5), dict(bridge.stats)

    refused = bridge.stats["rejected.bad_signature"]
    send(publisher, gateway.uid, MsgType.DISCOVERY, discovery("OLD-SECRET-1"), secret=OLD)
    send(publisher, gateway.uid, MsgType.DISCOVERY, discovery("NEW-SECRET-1"), secret=NEW)
    assert wait_for(lambda: Device.objects.filter(serial_number="NEW-SECRET-1").exists())
    assert bridge.stats["rejected.bad_signature"] == refused + 1
    assert not Device.objects.filter(serial_number="OLD-SECRET-1").exists()


def test_a_deleted_gateway_is_unknown_at_once(bridge, publisher):
    gateway = make_gateway(make_organization(), uid=f"gw-{uuid.uuid4().hex[:12]}", secret=OLD)
    send(publisher, gateway.uid, MsgType.DISCOVERY, discovery("GONE-0"), secret=OLD)
    assert wait_for(lambda: Device.objects.filter(serial_number="GONE-0").exists())
    Device.objects.filter(serial_number="GONE-0").delete()
    heard = bridge.stats["gateway_changes"]
    Gateway.objects.get(pk=gateway.pk).delete()
    assert wait_for(lambda: bridge.stats["gateway_changes"] > heard, 5), dict(bridge.stats)
    unknown = bridge.stats["rejected.unknown_gateway"]
    send(publisher, gateway.uid, MsgType.DISCOVERY, discovery("GONE-1"), secret=OLD)
    # At least: the shared broker may also hand the bridge other tests' retained
    # statuses, whose gateways are gone too.
    assert wait_for(lambda: bridge.stats["rejected.unknown_gateway"] >= unknown + 1)
    assert not Device.objects.filter(serial_number="GONE-1").exists()
