"""Device identity per organization, and a gateway speaks only for its own devices.

Hardware ids are unique within an organization, not across them: another tenant's
gateway that reports a MAC first cannot get this organization's batches refused. A
gateway's items naming a device bound to another gateway, or answering an operation
sent to another gateway, are dropped and counted as ``foreign_device`` — the rest of
its batch is written. ``devices.ingest.ingest`` is what the bridge calls for a batch.
"""

import pytest
from django.db import IntegrityError, transaction

from devices import operations
from devices.choices import DeviceState
from devices.ingest import GatewayRef, ingest
from devices.lifecycle import Action
from devices.models import Device, DeviceEvent, Operation, OperationState
from gateway.protocol import Message, MsgType, Reason, now_ms
from tests.factories import (
    make_device,
    make_gateway,
    make_license,
    make_member,
    make_organization,
)

pytestmark = pytest.mark.django_db

MAC = "02:AA:BB:CC:DD:01"


def ref(gateway):
    return GatewayRef(gateway.id, gateway.uid, gateway.organization_id, gateway.secret)


def discovery(gateway, *devices):
    return ref(gateway), Message(MsgType.DISCOVERY, gateway.uid, {"devices": list(devices)})


def events(gateway, *serials):
    items = [{"device": {"serial": s}, "kind": "telemetry", "ts": now_ms()} for s in serials]
    return ref(gateway), Message(MsgType.EVENT, gateway.uid, {"events": items})


@pytest.fixture
def orgs():
    return make_organization(), make_organization()


def test_the_same_hardware_id_may_exist_once_in_each_organization(orgs):
    a, b = orgs
    first = make_device(a, serial_number="A-1", hardware_id=MAC)
    make_device(b, serial_number="B-1", hardware_id=MAC.lower())
    with pytest.raises(IntegrityError), transaction.atomic():
        Device.objects.create(
            organization=a, device_type=first.device_type, serial_number="A-2", hardware_id=MAC
        )


def test_another_tenants_gateway_claiming_a_mac_first_does_not_refuse_ours(orgs):
    mine, theirs = orgs
    their_gateway, my_gateway = make_gateway(theirs), make_gateway(mine)
    # Their gateway reports our device's MAC first (a copied label, or on purpose).
    first = ingest([discovery(their_gateway, {"serial": "FAKE-1", "hardware_id": MAC})])
    assert first.accepted == 1 and not first.rejected
    # Our gateway's discovery and events are ours all the same.
    outcome = ingest(
        [
            discovery(my_gateway, {"serial": "REAL-1", "hardware_id": MAC}),
            events(my_gateway, "REAL-1"),
        ]
    )
    assert outcome.accepted == 2 and not outcome.rejected
    ours = Device.objects.get(organization=mine, serial_number="REAL-1")
    assert ours.hardware_id == MAC and ours.gateway_id == my_gateway.id
    assert DeviceEvent.objects.filter(device=ours).count() == 1
    assert Device.objects.get(organization=theirs).hardware_id == MAC  # theirs stays theirs


def test_items_for_another_gateways_device_are_dropped_and_counted_the_rest_written(orgs):
    org = orgs[0]
    mine, other = make_gateway(org), make_gateway(org)
    theirs = make_device(org, serial_number="THEIRS-1", hardware_id=MAC, gateway=other)
    make_device(org, serial_number="MINE-1", gateway=mine)
    outcome = ingest(
        [
            events(mine, "MINE-1", "THEIRS-1", "MINE-1"),
            # A new serial carrying the other gateway's device's MAC: not ours to use.
            discovery(mine, {"serial": "NEW-1"}, {"serial": "SPOOF-1", "hardware_id": MAC}),
        ]
    )
    assert outcome.rejected == {Reason.FOREIGN_DEVICE: 2}
    assert outcome.events == 2 and outcome.accepted == 2
    assert not DeviceEvent.objects.filter(device=theirs).exists()
    assert Device.objects.filter(organization=org, serial_number="NEW-1").exists()
    assert not Device.objects.filter(serial_number="SPOOF-1").exists()


def test_results_for_another_gateways_operations_or_devices_are_dropped_and_counted(orgs):
    org = orgs[0]
    make_license(org, seats=10)
    user = make_member(org, ["device_manager"])
    mine, other = make_gateway(org, is_online=True), make_gateway(org, is_online=True)
    my_device = make_device(org, serial_number="MINE-1", gateway=mine)
    their_device = make_device(org, serial_number="THEIRS-1", gateway=other)
    devices = Device.objects.filter(pk__in=[my_device.pk, their_device.pk])
    operations.start(org, user, Action.PROVISION, devices, "two")
    for gateway in (mine, other):
        operations.claim_for_dispatch(gateway.id)
    my_op = Operation.objects.get(device=my_device)
    their_op = Operation.objects.get(device=their_device)
    results = [
        {"op": my_op.wire_id, "ok": True, "code": "ok"},
        {"op": their_op.wire_id, "ok": True, "code": "ok"},  # sent to the other gateway
        {"op": "not-ours-0", "ok": True, "code": "ok", "device": {"serial": "THEIRS-1"}},
    ]
    outcome = ingest([(ref(mine), Message(MsgType.RESULT, mine.uid, {"results": results}))])
    assert outcome.rejected == {Reason.FOREIGN_DEVICE: 2}
    assert Operation.objects.get(pk=my_op.pk).state == OperationState.DONE
    assert Operation.objects.get(pk=their_op.pk).state == OperationState.SENT
    assert Device.objects.get(pk=their_device.pk).state == DeviceState.PROVISIONING
