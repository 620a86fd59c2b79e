"""The device actions in the widgets: preview, start, progress, cancel, retry."""

import json

import pytest
from django.urls import reverse
from django.utils import timezone

from devices import operations
from devices.choices import DeviceState as S
from devices.choices import OperationState
from devices.ingest import GatewayRef
from devices.models import BulkOperation, Device, Operation
from portal.choices import Role
from portal.models import AuditEntry
from tests.factories import (
    make_device,
    make_gateway,
    make_group,
    make_license,
    make_member,
    make_organization,
)

pytestmark = pytest.mark.django_db
ACTION = reverse("devices:action")


@pytest.fixture
def online(org):
    return make_gateway(org, name="Roof gateway", is_online=True, secret="s" * 32)


@pytest.fixture
def manager(org, login):
    return login(make_member(org, [Role.DEVICE_MANAGER]))


def make_fleet(org, gateway, n, state=S.DISCOVERED):
    return [make_device(org, gateway=gateway, state=state) for _ in range(n)]


def test_preview_shows_counts_seats_gateways_and_skipped_reasons(org, online, manager):
    make_license(org, seats=5)
    fresh = make_fleet(org, online, 3)
    done = make_device(org, gateway=online, state=S.PROVISIONED)
    stranger = make_device(make_organization(), state=S.DISCOVERED)
    ids = [d.pk for d in fresh] + [done.pk, stranger.pk]
    response = manager.get(ACTION, {"action": "provision", "device": ids}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert "Provision 3 devices" in body  # the confirm button says what it will do
    assert "A device that is provisioned cannot be provisioned." in body
    assert operations.NOT_FOUND in body and stranger.serial_number not in body
    assert "Roof gateway" in body and "Seats left afterwards" in body
    assert not BulkOperation.objects.exists()  # a preview changes nothing


def test_confirming_starts_one_bulk_operation(org, online, manager):
    make_license(org, seats=5)
    fleet = make_fleet(org, online, 3)
    data = {"action": "provision", "device": [d.pk for d in fleet]}
    response = manager.post(ACTION, data, HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    trigger = json.loads(response["HX-Trigger"])
    assert trigger["groupsChanged"]["message"] == "Provisioning 3 devices."
    bulk = BulkOperation.objects.get()
    assert bulk.total == 3 and bulk.created_by.memberships.get().organization == org
    assert set(Device.objects.values_list("state", flat=True)) == {S.PROVISIONING}
    assert AuditEntry.objects.filter(action="device.provision", object_count=3).exists()


def test_over_capacity_is_refused_with_the_free_count_and_nothing_runs(org, online, manager):
    make_license(org, seats=2)
    fleet = make_fleet(org, online, 3)
    data = {"action": "provision", "device": [d.pk for d in fleet]}
    preview = manager.get(ACTION, data, HTTP_HX_REQUEST="true").content.decode()
    assert "Over capacity" in preview and "disabled" in preview
    response = manager.post(ACTION, data, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "Only 2 of the requested 3 devices can be provisioned" in response.content.decode()
    assert not Operation.objects.exists()
    assert set(Device.objects.values_list("state", flat=True)) == {S.DISCOVERED}


def test_a_whole_group(org, online, manager):
    make_license(org, seats=10)
    group = make_group(org, "Floor 2")
    for device in make_fleet(org, online, 4):
        device.groups.add(group)
    make_fleet(org, online, 2)  # not in the group
    preview = manager.get(
        ACTION, {"action": "provision", "group": group.pk}, HTTP_HX_REQUEST="true"
    )
    assert "Provision all devices of group “Floor 2”" in preview.content.decode()
    manager.post(ACTION, {"action": "provision", "group": group.pk}, HTTP_HX_REQUEST="true")
    assert BulkOperation.objects.get().total == 4


def test_another_organizations_group_is_a_field_error(org, online, manager):
    theirs = make_group(make_organization(), "Theirs")
    response = manager.post(ACTION, {"action": "provision", "group": theirs.pk})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not BulkOperation.objects.exists()


def test_nothing_selected_and_bad_action_are_form_errors(manager):
    body = manager.get(ACTION, {"action": "provision"}).content.decode()
    assert "No devices selected" in body
    response = manager.post(ACTION, {"action": "explode", "device": [1]})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()


def test_an_iot_manager_alone_may_not_run_device_actions(org, online, login):
    client = login(make_member(org, [Role.IOT_MANAGER]))
    device = make_device(org, gateway=online)
    response = client.post(ACTION, {"action": "provision", "device": [device.pk]})
    assert response.status_code == 403
    assert not BulkOperation.objects.exists()


def test_widget_detail_cancel_and_retry(org, online, manager, settings):
    settings.OPERATIONS = {**settings.OPERATIONS, "GATEWAY_CONCURRENCY": 2}
    make_license(org, seats=10)
    fleet = make_fleet(org, online, 4)
    user = make_member(org, [Role.ADMINISTRATOR])
    bulk, _ = operations.start(
        org, user, "provision", Device.objects.filter(pk__in=[d.pk for d in fleet]), "4 devices"
    )
    claimed = operations.claim_for_dispatch(online.id)
    ref = GatewayRef(online.id, online.uid, org.id, online.secret)
    failures = [
        {
            "op": operations.wire_id(c["uid"], c["generation"]),
            "ok": False,
            "code": "rejected",
            "reason": "wrong key",
        }
        for c in claimed
    ]
    operations.complete([(ref, failures)], timezone.now())

    widget = manager.get(
        reverse("devices:operations-widget"), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert f'id="bulk-{bulk.pk}"' in widget and 'class="bulk-bar"' in widget
    # The bar and its legend say failed in red, never a green bar (issue 9, point 3).
    assert '<rect class="bulk-seg seg-failed" data-part="failed" x="0" y="0" width="2"' in widget
    assert '<span class="bulk-failed">2</span> failed' in widget and "wrong key" in widget
    detail = manager.get(reverse("devices:operation-detail", args=[bulk.pk])).content.decode()
    assert "wrong key" in detail

    response = manager.post(
        reverse("devices:operation-cancel", args=[bulk.pk]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 204
    bulk.refresh_from_db()
    assert (bulk.failed, bulk.cancelled, bulk.is_running) == (2, 2, False)

    response = manager.post(
        reverse("devices:operation-retry", args=[bulk.pk]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 204
    again = BulkOperation.objects.exclude(pk=bulk.pk).get()
    assert again.total == 2
    assert Operation.objects.filter(bulk=again, state=OperationState.QUEUED).count() == 2


def test_row_menu_offers_only_actions_the_state_allows(org, online, manager):
    make_device(org, gateway=online, state=S.PROVISIONED, serial_number="P-1")
    body = manager.get(reverse("devices:widget"), HTTP_HX_REQUEST="true").content.decode()
    assert "action=deprovision&amp;device=" in body and "action=reprovision&amp;device=" in body
    assert "action=provision&amp;device=" not in body
