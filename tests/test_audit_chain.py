"""The audit log's hash chain: what is hashed, appending, ``verify_audit`` catching a
changed, a deleted and an inserted entry, the closing entries of bulk operations, the
migration that chained the entries written before, and docs/audit-log.md's checker."""

import io
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from devices import operations
from devices.choices import DeviceState as S
from devices.ingest import GatewayRef
from devices.lifecycle import Action
from devices.models import Device, Operation
from portal import audit, audit_chain
from portal.choices import AuditOutcome, Role
from portal.models import AuditChainHead, AuditEntry
from tests.factories import (
    make_device,
    make_devices,
    make_gateway,
    make_license,
    make_member,
    make_organization,
)

pytestmark = pytest.mark.django_db

DOC = Path(__file__).resolve().parent.parent / "docs" / "audit-log.md"


@pytest.fixture
def org():
    return make_organization(slug="acme")


@pytest.fixture
def admin(org):
    return make_member(org, [Role.ADMINISTRATOR], username="ana")


def fill(org, user, n):
    return [
        audit.record(org, user, "group.create", [i], object_type="devicegroup", n=i)
        for i in range(n)
    ]


def verify(*args):
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_audit", *args, stdout=out, stderr=err)
    except CommandError as error:
        return False, out.getvalue() + str(error), err.getvalue()
    return True, out.getvalue(), err.getvalue()


# -- what is hashed ----------------------------------------------------------------------


def test_the_documented_example_hashes_as_documented():
    """The example content of docs/audit-log.md, through the code's own definition."""
    text = DOC.read_text()
    content = json.loads(re.search(r'```json\n(\{"v": 1.*?\})\n```', text, re.S).group(1))
    expected_bytes = re.search(r"has the canonical bytes\n\n```\n(.*?)\n```", text, re.S).group(1)
    assert audit_chain.dumps(content) == expected_bytes
    expected_hash = re.search(r"and the hash `([0-9a-f]{64})`", text).group(1)
    assert audit_chain.digest(content) == expected_hash


def test_an_entry_hashes_its_content_and_links_to_the_one_before(org, admin):
    first, second = fill(org, admin, 2)
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == audit_chain.GENESIS_HASH and second.prev_hash == first.hash
    stored = AuditEntry.objects.get(pk=second.pk)
    assert audit_chain.digest(audit_chain.content(stored)) == stored.hash == second.hash
    assert audit_chain.content(stored) == {
        "v": 1,
        "organization": org.pk,
        "seq": 2,
        "created_at": audit_chain.timestamp(stored.created_at),
        "actor": "ana",
        "action": "group.create",
        "object_type": "devicegroup",
        "object_ids": [1],
        "object_count": 1,
        "outcome": "success",
        "bulk": None,
        "detail": {"n": 1},
        "prev_hash": first.hash,
    }
    head = AuditChainHead.objects.get(organization=org)
    assert (head.seq, head.hash) == (2, second.hash)
    assert first.created_at <= second.created_at


def test_values_are_stored_as_they_read_back(org):
    entry = audit.record(
        org,
        None,
        "test.values",
        object_type="x",
        ratio=0.5,
        whole=2.0,
        tags={"b", "a"},
        when=datetime(2026, 1, 2, tzinfo=UTC),
        nul="a\x00b",
        nested={"k": (1, 2)},
    )
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert stored.detail == {
        "ratio": "0.5",
        "whole": 2,
        "tags": ["a", "b"],
        "when": "2026-01-02 00:00:00+00:00",
        "nul": "ab",
        "nested": {"k": [1, 2]},
    }
    assert stored.actor == "" and stored.user is None
    assert audit_chain.digest(audit_chain.content(stored)) == stored.hash


def test_a_deleted_account_keeps_its_name_in_the_log(org, admin):
    (entry,) = fill(org, admin, 1)
    admin.delete()
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert stored.user is None and stored.actor == "ana"
    assert verify()[0]


def test_each_organization_has_its_own_chain(org, admin):
    other = make_organization(slug="globex")
    fill(org, admin, 2)
    (entry,) = fill(other, make_member(other, [Role.ADMINISTRATOR]), 1)
    assert entry.seq == 1 and entry.prev_hash == audit_chain.GENESIS_HASH


def test_recording_costs_three_statements_once_the_organization_exists(org, admin):
    with CaptureQueriesContext(connection) as queries:
        fill(org, admin, 1)
    sql = [q["sql"].split()[0] for q in queries.captured_queries]
    assert sql == ["SELECT", "INSERT", "UPDATE"], sql


# -- verify_audit ----------------------------------------------------------------------------


def test_verify_audit_passes_an_intact_chain_with_a_progress_bar(org, admin):
    entries = fill(org, admin, 5)
    ok, out, err = verify("--organization", "acme")
    assert ok, out
    assert f"ok acme: 5 entries, chain intact; last entry 5, hash {entries[-1].hash}" in out
    assert "100%" in err and "5/5 entries checked" in err


def test_verify_audit_catches_an_edited_row(org, admin):
    fill(org, admin, 5)
    AuditEntry.objects.filter(organization=org, seq=3).update(detail={"n": 99})
    ok, out, _ = verify()
    assert not ok
    assert "FAILED acme: Entry 3 was changed after it was written." in out
    assert "1 of 1 audit chains failed the check: acme" in out


def test_verify_audit_catches_an_edit_whose_hash_was_written_anew(org, admin):
    fill(org, admin, 5)
    entry = AuditEntry.objects.get(organization=org, seq=2)
    entry.actor = "someone-else"
    entry.hash = audit_chain.digest(audit_chain.content(entry))
    entry.save()
    ok, out, _ = verify()
    assert not ok and "Entry 3 does not follow entry 2: entry 2 was changed" in out
    assert "first problem at entry 2, changed" in out


def test_verify_audit_catches_a_deleted_row(org, admin):
    fill(org, admin, 5)
    AuditEntry.objects.filter(organization=org, seq__in=[2, 3]).delete()
    ok, out, _ = verify()
    assert not ok and "Entry 2 to 3 is missing: deleted." in out


def test_verify_audit_catches_rows_deleted_from_the_end(org, admin):
    fill(org, admin, 5)
    AuditEntry.objects.filter(organization=org, seq=5).delete()
    ok, out, _ = verify()
    assert not ok and "Entry 5 is missing from the end: deleted." in out


def test_verify_audit_catches_an_entry_inserted_out_of_chain(org, admin):
    entries = fill(org, admin, 3)
    forged = AuditEntry(
        organization=org,
        seq=4,
        actor="ana",
        action="license.upload",
        created_at=timezone.now(),
        prev_hash=entries[-1].hash,
    )
    forged.hash = audit_chain.digest(audit_chain.content(forged))
    forged.save()  # well formed, but not appended through the chain head
    ok, out, _ = verify()
    assert not ok and "Entry 4 lies beyond the chain's last link (3)" in out


def test_verify_audit_checks_every_organization_and_names_each(org, admin):
    other = make_organization(slug="globex")
    fill(org, admin, 2)
    fill(other, make_member(other, [Role.ADMINISTRATOR]), 2)
    make_organization(slug="empty")
    AuditEntry.objects.filter(organization=other, seq=1).update(action="x")
    ok, out, _ = verify()
    assert not ok
    assert "ok acme: 2 entries" in out and "FAILED globex: Entry 1 was changed" in out
    assert "ok empty: no entries yet" in out
    assert verify("--organization", "acme")[0]
    with pytest.raises(CommandError, match="No organization 'nope'"):
        call_command("verify_audit", "--organization", "nope", stdout=io.StringIO())


# -- bulk operations: one entry to start, one to close ----------------------------------------


@pytest.fixture
def gateway(org):
    return make_gateway(org, is_online=True, secret="x" * 32)


def answer_all(bulk, ok):
    ops = list(Operation.objects.filter(bulk=bulk).select_related("gateway"))
    gateway = ops[0].gateway
    ref = GatewayRef(gateway.id, gateway.uid, gateway.organization_id, gateway.secret)
    items = [
        {"op": op.wire_id, "ok": ok, "code": "ok" if ok else "failed", "reason": "broken"}
        for op in ops
    ]
    operations.complete([(ref, items)], timezone.now())


def provision(org, user, gateway, n, send=True):
    make_license(org, seats=n)
    for _ in range(n):
        make_device(org, gateway=gateway, state=S.DISCOVERED)
    bulk, _ = operations.start(
        org, user, Action.PROVISION, Device.objects.for_organization(org), "everything"
    )
    if send:
        operations.claim_for_dispatch(gateway.id)
    return bulk


def test_a_bulk_operation_that_fails_everywhere_closes_as_a_failure(org, admin, gateway):
    bulk = provision(org, admin, gateway, 3)
    opening = AuditEntry.objects.get(action="device.provision")
    assert (opening.bulk, opening.outcome, opening.object_count) == (bulk.pk, "success", 3)
    answer_all(bulk, ok=False)
    closing = AuditEntry.objects.get(action=audit.FINISHED)
    assert closing.bulk == bulk.pk and closing.outcome == AuditOutcome.FAILURE
    assert closing.detail == {
        "kind": "provision",
        "total": 3,
        "done": 0,
        "failed": 3,
        "cancelled": 0,
        "opening": opening.seq,
    }
    assert closing.seq == opening.seq + 1 and closing.actor == ""
    assert AuditEntry.objects.get(pk=opening.pk).hash == opening.hash  # never rewritten
    assert audit.closings([opening]) == {bulk.pk: closing}
    assert verify()[0]


def test_a_bulk_operation_that_succeeds_closes_once(org, admin, gateway):
    bulk = provision(org, admin, gateway, 2)
    answer_all(bulk, ok=True)
    answer_all(bulk, ok=True)  # a repeated answer closes nothing again
    bulk.refresh_from_db()
    assert audit.bulks_finished([bulk]) == []  # nor does a second call
    (closing,) = AuditEntry.objects.filter(action=audit.FINISHED)
    assert closing.outcome == AuditOutcome.SUCCESS and closing.detail["done"] == 2


def test_a_cancelled_bulk_operation_closes_as_cancelled(org, admin, gateway):
    bulk = provision(org, admin, gateway, 2, send=False)
    operations.cancel(bulk, admin)
    closing = AuditEntry.objects.get(action=audit.FINISHED)
    assert closing.outcome == AuditOutcome.CANCELLED and closing.detail["cancelled"] == 2


@pytest.mark.parametrize(
    ("counts", "outcome"),
    [
        ((4, 4, 0, 0), AuditOutcome.SUCCESS),
        ((4, 1, 3, 0), AuditOutcome.PARTIAL),
        ((4, 1, 0, 3), AuditOutcome.PARTIAL),
        ((4, 0, 1, 3), AuditOutcome.FAILURE),
        ((4, 0, 0, 4), AuditOutcome.CANCELLED),
    ],
)
def test_final_outcome(counts, outcome):
    assert audit.final_outcome(*counts) == outcome


def test_a_large_bulk_action_is_one_entry_with_a_sample_of_ids(org, admin, gateway):
    """``audit.record`` inside the provisioning's one transaction: one entry, however many
    devices (their count exact, their ids a sample)."""
    make_license(org, seats=2000)
    make_devices(org, 1500, gateway=gateway)
    with CaptureQueriesContext(connection) as queries:
        operations.start(
            org, admin, Action.PROVISION, Device.objects.for_organization(org), "all of them"
        )
    inserts = [q for q in queries.captured_queries if "portal_auditentry" in q["sql"]]
    assert len(inserts) == 1
    (entry,) = AuditEntry.objects.all()
    assert entry.object_count == 1500 and len(entry.object_ids) == audit.MAX_IDS


# -- the migration ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_chains_the_entries_written_before():
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("portal", "0001_initial")])
    old = executor.loader.project_state([("portal", "0001_initial")]).apps
    try:
        Organization = old.get_model("portal", "Organization")
        User = old.get_model("auth", "User")
        Entry = old.get_model("portal", "AuditEntry")
        acme = Organization.objects.create(name="Acme", slug="acme")
        quiet = Organization.objects.create(name="Quiet", slug="quiet")
        ana = User.objects.create(username="ana")
        for n in range(3):
            Entry.objects.create(
                organization=acme,
                user=ana if n else None,
                action="device.provision",
                object_type="device",
                object_ids=[n],
                object_count=1,
                detail={"bulk": 40 + n, "target": f"group {n}"},
            )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    entries = list(AuditEntry.objects.filter(organization_id=acme.pk).order_by("seq"))
    assert [(e.seq, e.actor, e.bulk) for e in entries] == [
        (1, "", 40),
        (2, "ana", 41),
        (3, "ana", 42),
    ]
    assert entries[0].detail == {"target": "group 0"}
    assert AuditChainHead.objects.get(organization_id=quiet.pk).seq == 0
    ok, out, _ = verify()
    assert ok and "ok acme: 3 entries" in out and "ok quiet: no entries yet" in out
    # New entries carry on from there.
    entry = audit.record(AuditEntry.objects.first().organization, None, "x")
    assert entry.seq == 4 and entry.prev_hash == entries[-1].hash


# -- the export and the documented checker ------------------------------------------------------


def doc_checker(tmp_path) -> Path:
    code = re.search(r"```python\n(import csv, hashlib.*?)```", DOC.read_text(), re.S).group(1)
    script = tmp_path / "check_audit.py"
    script.write_text(code)
    return script


def run_checker(script, export):
    return subprocess.run(
        [sys.executable, str(script), str(export)], capture_output=True, text=True, timeout=60
    )


def test_an_export_checks_out_with_the_documented_snippet_and_a_change_does_not(
    org, admin, client, tmp_path
):
    # A username may start with "@", "+" or "-": a formula to a spreadsheet.
    plus = make_member(org, [Role.ADMINISTRATOR], username="+1-cmd")
    audit.record(org, plus, "group.create", [1], name='=HYPERLINK("x")', note="-1")
    audit.record(org, admin, "member.add", [2], username="@bob", roles=["device_manager"])
    fill(org, admin, 3)
    client.force_login(admin)
    response = client.get(reverse("audit:export"))
    assert response.status_code == 200
    body = response.getvalue().decode("utf-8")
    assert ",'+1-cmd,group.create," in body  # escaped, and the checker takes it off again
    export = tmp_path / "audit.csv"
    export.write_text(body, encoding="utf-8", newline="")
    script = doc_checker(tmp_path)
    checked = run_checker(script, export)
    assert checked.returncode == 0, checked.stderr
    last = AuditEntry.objects.filter(organization=org, seq=5).get()
    assert f"last entry 5, hash {last.hash}" in checked.stdout

    tampered = tmp_path / "tampered.csv"
    tampered.write_text(body.replace("@bob", "@eve"), encoding="utf-8", newline="")
    checked = run_checker(script, tampered)
    assert checked.returncode != 0 and "entry 2 was changed" in checked.stderr
