"""Operations in the database: plan, start, results, retries, the reconciler, cancel.

The gateway side is played by calling ``complete`` with result items, as the bridge
does; the real round trip through Mosquitto is in ``test_provisioning_e2e``.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from devices import lifecycle, operations
from devices.choices import DeviceState as S
from devices.choices import OperationState
from devices.ingest import GatewayRef
from devices.lifecycle import Action
from devices.models import BulkOperation, Device, Operation
from gateway.codes import ResultCode
from licensing.capacity import CapacityExceeded
from portal.models import AuditEntry
from tests.factories import (
    make_device,
    make_gateway,
    make_license,
    make_member,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(org):
    return make_member(org, ["device_manager"])


@pytest.fixture
def gateways(org):
    return [make_gateway(org, is_online=True, secret="x" * 32) for _ in range(2)]


def devices_of(org, gateways, n, state=S.DISCOVERED, **fields):
    return [
        make_device(org, gateway=gateways[i % len(gateways)], state=state, **fields)
        for i in range(n)
    ]


def ref(gateway):
    return GatewayRef(gateway.id, gateway.uid, gateway.organization_id, gateway.secret)


def result(op, ok=True, code=None, reason=None):
    item = {"op": op.wire_id, "ok": ok, "code": code or (ResultCode.OK if ok else "failed")}
    if reason:
        item["reason"] = reason
    return item


def answer(ops, now=None, **kwargs):
    """Results from each operation's own gateway, in one bridge batch."""
    by_gateway = {}
    for op in ops:
        by_gateway.setdefault(op.gateway_id, (op.gateway, []))[1].append(result(op, **kwargs))
    batch = [(ref(gw), items) for gw, items in by_gateway.values()]
    return operations.complete(batch, now or timezone.now())


def send_all(gateways, now=None):
    for gateway in gateways:
        operations.claim_for_dispatch(gateway.id, now)


def test_plan_lists_skipped_devices_with_a_reason_and_counts_seats(org, gateways):
    make_license(org, seats=10)
    fresh = devices_of(org, gateways, 3)
    done = devices_of(org, gateways, 2, state=S.PROVISIONED)
    orphan = make_device(org, state=S.DISCOVERED)
    plan = operations.plan(org, Action.PROVISION, Device.objects.for_organization(org))
    assert {r["id"] for r in plan.eligible} == {d.pk for d in fresh}
    reasons = {s["id"]: s["reason"] for s in plan.skipped}
    assert reasons[done[0].pk] == "A device that is provisioned cannot be provisioned."
    assert reasons[orphan.pk] == operations.NO_GATEWAY
    assert plan.seats_needed == 3 and plan.seats_free == 8 and plan.seats_left == 5
    assert sorted(g.devices for g in plan.gateways) == [1, 2]


def test_reprovision_of_a_provisioned_device_takes_no_new_seat(org, gateways):
    make_license(org, seats=1)
    devices_of(org, gateways, 1, state=S.PROVISIONED)
    devices_of(org, gateways, 1, state=S.DISCOVERED)
    plan = operations.plan(org, Action.REPROVISION, Device.objects.for_organization(org))
    assert len(plan.eligible) == 2 and plan.seats_needed == 1 and plan.seats_free == 0
    assert plan.over_capacity


def test_start_writes_one_bulk_operation_and_one_operation_per_device(
    org, user, gateways, django_assert_max_num_queries
):
    make_license(org, seats=100)
    devices_of(org, gateways, 40)
    qs = Device.objects.for_organization(org)
    with django_assert_max_num_queries(20):
        bulk, plan = operations.start(org, user, Action.PROVISION, qs, "all devices")
    assert bulk.total == 40 and Operation.objects.filter(bulk=bulk).count() == 40
    assert set(qs.values_list("state", flat=True)) == {S.PROVISIONING}
    entry = AuditEntry.objects.get(action="device.provision")
    assert entry.object_count == 40 and entry.user == user


def test_query_count_does_not_grow_with_the_number_of_devices(org, user, gateways):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_license(org, seats=1000)
    counts = []
    for n in (10, 300):
        devices = devices_of(org, gateways, n)
        qs = Device.objects.filter(pk__in=[d.pk for d in devices])
        with CaptureQueriesContext(connection) as queries:
            operations.start(org, user, Action.PROVISION, qs, f"{n} devices")
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_beyond_capacity_nothing_changes_and_the_error_says_how_many_fit(org, user, gateways):
    make_license(org, seats=3)
    devices_of(org, gateways, 5)
    qs = Device.objects.for_organization(org)
    with pytest.raises(CapacityExceeded, match="Only 3 of the requested 5 devices"):
        operations.start(org, user, Action.PROVISION, qs, "all")
    assert not BulkOperation.objects.exists() and not Operation.objects.exists()
    assert set(qs.values_list("state", flat=True)) == {S.DISCOVERED}


def test_nothing_to_do_says_why(org, user, gateways):
    devices_of(org, gateways, 2, state=S.DEPROVISIONED)
    with pytest.raises(operations.NothingToDo, match="cannot be deprovisioned"):
        operations.start(org, user, Action.DEPROVISION, Device.objects.for_organization(org), "all")


def test_dispatch_respects_the_per_gateway_cap(org, user, gateways, settings):
    settings.OPERATIONS = {**settings.OPERATIONS, "GATEWAY_CONCURRENCY": 3}
    make_license(org, seats=100)
    devices_of(org, gateways[:1], 5)
    operations.start(org, user, Action.PROVISION, Device.objects.for_organization(org), "all")
    first = operations.claim_for_dispatch(gateways[0].id)
    assert len(first) == 3 and operations.claim_for_dispatch(gateways[0].id) == []
    items = operations.command_items(first)
    assert {i["kind"] for i in items} == {"provision"} and all(
        "serial" in i["device"] for i in items
    )
    answer(Operation.objects.filter(state=OperationState.SENT)[:2])
    assert len(operations.claim_for_dispatch(gateways[0].id)) == 2


def test_results_finish_operations_once_and_move_devices(org, user, gateways):
    make_license(org, seats=100)
    devices_of(org, gateways, 6)
    bulk, _ = operations.start(
        org, user, Action.PROVISION, Device.objects.for_organization(org), "all"
    )
    send_all(gateways)
    ops = list(Operation.objects.filter(bulk=bulk).select_related("gateway"))
    changes = answer(ops[:4])
    answer(ops[:4])  # a QoS 1 redelivery: nothing counts twice
    answer(ops[4:], ok=False, code=ResultCode.REJECTED, reason="device said no")
    bulk.refresh_from_db()
    assert (bulk.done, bulk.failed, bulk.total) == (4, 2, 6) and bulk.finished_at
    states = dict(Device.objects.values_list("pk", "state"))
    assert [states[op.device_id] for op in ops] == [S.PROVISIONED] * 4 + [S.FAILED] * 2
    failed = Operation.objects.get(pk=ops[5].pk)
    assert failed.error == "device said no" and failed.code == ResultCode.REJECTED
    progress = [p for _, p in changes.extra[org.pk]]
    assert progress and progress[-1]["done"] == 4
    assert len(changes.devices[org.pk]) == 4


def test_a_result_from_another_gateway_or_generation_is_ignored(org, user, gateways):
    make_license(org, seats=100)
    devices_of(org, gateways[:1], 1)
    operations.start(org, user, Action.PROVISION, Device.objects.for_organization(org), "all")
    send_all(gateways)
    op = Operation.objects.get()
    operations.complete([(ref(gateways[1]), [result(op)])], timezone.now())
    stale = {"op": f"{op.uid.hex}-7", "ok": True, "code": "ok"}
    operations.complete([(ref(gateways[0]), [stale])], timezone.now())
    assert Operation.objects.get().state == OperationState.SENT


def test_retryable_failures_come_back_with_a_new_generation(org, user, gateways):
    make_license(org, seats=100)
    devices_of(org, gateways[:1], 1)
    operations.start(org, user, Action.PROVISION, Device.objects.for_organization(org), "all")
    send_all(gateways)
    op = Operation.objects.get()
    now = timezone.now()
    answer([op], now=now, ok=False, code=ResultCode.BUSY)
    op.refresh_from_db()
    assert op.state == OperationState.QUEUED and op.generation == 1
    assert op.next_attempt_at > now  # backoff
    assert operations.claim_for_dispatch(gateways[0].id, now) == []
    later = now + timedelta(minutes=10)
    (claimed,) = operations.claim_for_dispatch(gateways[0].id, later)
    assert operations.wire_id(claimed["uid"], claimed["generation"]).endswith("-1")


def test_reconciler_resends_then_gives_up_after_the_budget(org, user, gateways, settings):
    settings.OPERATIONS = {**settings.OPERATIONS, "MAX_ATTEMPTS": 2}
    make_license(org, seats=100)
    (device,) = devices_of(org, gateways[:1], 1)
    operations.start(org, user, Action.PROVISION, Device.objects.for_organization(org), "all")
    now = timezone.now()
    operations.claim_for_dispatch(gateways[0].id, now)
    late = now + timedelta(seconds=settings.OPERATIONS["ANSWER_TIMEOUT_S"] + 1)
    result_, _ = operations.reconcile(late)
    op = Operation.objects.get()
    assert result_.resent == 1 and op.state == OperationState.QUEUED and op.generation == 0
    assert result_.gateways == [gateways[0].id]
    operations.claim_for_dispatch(gateways[0].id, late)
    later = late + timedelta(seconds=settings.OPERATIONS["ANSWER_TIMEOUT_S"] + 1)
    result_, changes = operations.reconcile(later)
    op.refresh_from_db()
    assert result_.gave_up == 1 and op.state == OperationState.FAILED and op.attempts == 2
    assert "after 2 attempts" in op.error
    assert Device.objects.get(pk=device.pk).state == S.FAILED
    assert BulkOperation.objects.get().failed == 1


def test_offline_gateway_waits_until_the_deadline(org, user, gateways):
    make_license(org, seats=100)
    gateways[0].is_online = False
    gateways[0].save()
    devices_of(org, gateways[:1], 2)
    bulk, plan = operations.start(
        org, user, Action.PROVISION, Device.objects.for_organization(org), "all"
    )
    assert plan.waiting == 2
    result_, _ = operations.reconcile()
    assert result_.gateways == [] and Operation.objects.filter(state="queued").count() == 2
    result_, _ = operations.reconcile(timezone.now() + timedelta(days=2))
    assert result_.expired == 2
    bulk.refresh_from_db()
    assert bulk.failed == 2 and not bulk.is_running
    assert set(Device.objects.values_list("state", flat=True)) == {S.FAILED}


def test_cancel_returns_unsent_devices_to_where_they_were(org, user, gateways, settings):
    settings.OPERATIONS = {**settings.OPERATIONS, "GATEWAY_CONCURRENCY": 2}
    make_license(org, seats=100)
    devices_of(org, gateways[:1], 3, state=S.DEPROVISIONED)
    devices_of(org, gateways[:1], 2, state=S.DISCOVERED)
    bulk, _ = operations.start(
        org, user, Action.PROVISION, Device.objects.for_organization(org), "all"
    )
    sent = operations.claim_for_dispatch(gateways[0].id)
    assert operations.cancel(bulk, user) == 3
    bulk.refresh_from_db()
    assert bulk.cancelled == 3 and bulk.is_running  # the two sent ones still run
    sent_devices = Operation.objects.filter(pk__in=[s["id"] for s in sent]).values("device_id")
    states = set(Device.objects.exclude(pk__in=sent_devices).values_list("state", flat=True))
    assert states <= {S.DEPROVISIONED, S.DISCOVERED}
    answer(Operation.objects.filter(state=OperationState.SENT))
    bulk.refresh_from_db()
    assert (bulk.done, bulk.cancelled, bulk.is_running) == (2, 3, False)


def test_retry_failed_starts_a_new_bulk_for_the_failed_devices(org, user, gateways):
    make_license(org, seats=100)
    devices_of(org, gateways, 4)
    bulk, _ = operations.start(
        org, user, Action.PROVISION, Device.objects.for_organization(org), "all"
    )
    send_all(gateways)
    ops = list(Operation.objects.filter(bulk=bulk).select_related("gateway"))
    answer(ops[:3])
    answer(ops[3:], ok=False, code=ResultCode.REJECTED)
    again, plan = operations.retry_failed(bulk, user)
    assert again.total == 1 and plan.eligible[0]["id"] == ops[3].device_id


def test_a_device_provisioned_elsewhere_is_pointed_to_reprovision(org, gateways):
    make_license(org, seats=10)
    (stray,) = devices_of(org, gateways, 1, reported_state="provisioned")
    provision = operations.plan(org, Action.PROVISION, Device.objects.for_organization(org))
    assert provision.skipped == [
        {"id": stray.pk, "serial": stray.serial_number, "reason": lifecycle.PROVISIONED_ELSEWHERE}
    ]
    reprovision = operations.plan(org, Action.REPROVISION, Device.objects.for_organization(org))
    assert [r["id"] for r in reprovision.eligible] == [stray.pk]
