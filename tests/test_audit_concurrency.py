"""Concurrent recording never forks an organization's audit chain (PostgreSQL only).

Threads, each in its own connection and transaction, record for one organization at
the same moment and keep their transactions open a little after recording, as an
action does while it finishes its work. Without the chain head's row lock they would
all read the same last entry and link to it (a fork, refused by the unique number);
with it they queue, and the chain is 1, 2, 3, … with every link intact. SQLite
serialises writers at BEGIN (IMMEDIATE transactions), so it cannot show the race.
"""

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction

from portal import audit, audit_chain
from portal.choices import Role
from portal.models import AuditChainHead, AuditEntry
from tests.factories import make_member, make_organization

ON_POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"

pytestmark = [
    pytest.mark.skipif(
        not ON_POSTGRES,
        reason="needs PostgreSQL (set DATABASE_URL=postgres://…): SQLite serializes writers "
        "at BEGIN, so it cannot show a race",
    ),
    pytest.mark.django_db(transaction=True),
]

THREADS = 20


def race(work):
    barrier = threading.Barrier(THREADS)

    def run(n):
        try:
            barrier.wait(timeout=30)
            with transaction.atomic():
                work(n)
                time.sleep(0.02)  # the action's transaction goes on after recording
            return "ok"
        except Exception as error:  # reported, so that a fork shows as what it is
            return repr(error)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(run, range(THREADS)))


def assert_one_chain(organization, length):
    entries = list(AuditEntry.objects.filter(organization=organization).order_by("seq"))
    assert [e.seq for e in entries] == list(range(1, length + 1))
    links = [audit_chain.Link(audit_chain.content(e), e.hash) for e in entries]
    head = AuditChainHead.objects.get(organization=organization)
    checked = list(audit_chain.check(links, (head.seq, head.hash)))
    assert all(isinstance(item, audit_chain.Link) for item in checked), checked[-1]
    assert len({e.prev_hash for e in entries}) == length  # no two entries share a parent
    out = io.StringIO()
    call_command("verify_audit", "--organization", organization.slug, stdout=out)
    assert f"{length} entries, chain intact" in out.getvalue()


def test_twenty_requests_recording_at_once_make_one_chain():
    organization = make_organization()
    users = [make_member(organization, [Role.ADMINISTRATOR]) for _ in range(THREADS)]
    outcomes = race(lambda n: audit.record(organization, users[n], "group.create", [n], n=n))
    assert outcomes == ["ok"] * THREADS
    assert_one_chain(organization, THREADS)


def test_a_new_organization_s_first_entries_at_once_make_one_chain():
    """Organizations made before the chain existed (or by a bulk insert) have no head
    yet: the first entries create it, and still queue behind one another."""
    organization = make_organization()
    AuditChainHead.objects.filter(organization=organization).delete()
    outcomes = race(lambda n: audit.record(organization, None, "test.first", [n]))
    assert outcomes == ["ok"] * THREADS
    assert_one_chain(organization, THREADS)


def test_closing_entries_and_actions_at_once_make_one_chain():
    """The bridge closing bulk operations while users act: one chain still."""
    organization = make_organization()

    class Bulk:
        def __init__(self, pk):
            self.pk, self.organization_id, self.kind = pk, organization.pk, "provision"
            self.total, self.done, self.failed, self.cancelled = 1, 0, 1, 0

    def work(n):
        if n % 2:
            audit.bulks_finished([Bulk(n)])
        else:
            audit.record(organization, None, "device.provision", [n], bulk=n + 1)

    assert race(work) == ["ok"] * THREADS
    assert_one_chain(organization, THREADS)
