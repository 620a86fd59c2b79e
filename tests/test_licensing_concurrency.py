"""Concurrent reservations never overshoot capacity (PostgreSQL only).

Fifty threads, each in its own connection and transaction, each reserving seats and
moving its devices to provisioning, race for the last free seats. Only a real row lock
makes exactly the free number win. SQLite serializes every writer at BEGIN (IMMEDIATE
transactions), so it could not show the race; the CI's PostgreSQL pass runs this.
"""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from devices import lifecycle, operations
from devices.lifecycle import LICENSED_STATES, Action
from devices.models import BulkOperation, Device, Operation
from licensing import capacity, signing
from licensing.capacity import CapacityExceeded
from licensing.keys import DEMO_PRIVATE_KEY, DEMO_PUBLIC_KEY
from licensing.models import License
from tests.factories import (
    make_device,
    make_device_type,
    make_gateway,
    make_member,
    make_organization,
)

ON_POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"

pytestmark = [
    pytest.mark.skipif(
        not ON_POSTGRES,
        reason="needs PostgreSQL (set DATABASE_URL=postgres://…): SQLite serializes writers "
        "at BEGIN, so it cannot show a race",
    ),
    pytest.mark.django_db(transaction=True),
]

THREADS = 50


def count_licensed(organization):
    return Device.objects.for_organization(organization).filter(state__in=LICENSED_STATES).count()


def make_license(organization, seats):
    today = timezone.localdate()
    data = signing.issue(
        DEMO_PRIVATE_KEY,
        {
            "organization": organization.slug,
            "capacity": seats,
            "valid_from": today - timedelta(days=1),
            "valid_until": today + timedelta(days=30),
        },
    )
    claims = signing.verify(data, DEMO_PUBLIC_KEY, organization=organization.slug)
    row = License.from_claims(organization, claims, data.decode())
    row.save()
    return row


def race(organization, batches):
    """Every batch of devices tries to provision at once; returns (granted, refused) batches."""
    start = threading.Barrier(len(batches))

    def provision(device_ids):
        try:
            start.wait(timeout=30)
            with transaction.atomic():
                capacity.reserve(organization, len(device_ids), count_licensed)
                moved = lifecycle.apply_bulk(
                    Device.objects.filter(pk__in=device_ids), lifecycle.Action.PROVISION
                )
                assert sum(moved.values()) == len(device_ids)
            return "granted"
        except CapacityExceeded:
            return "refused"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(batches)) as pool:
        outcomes = list(pool.map(provision, batches))
    return outcomes.count("granted"), outcomes.count("refused")


def setup_organization(seats, already_provisioned, waiting):
    organization = make_organization()
    make_license(organization, seats)
    device_type = make_device_type()
    for _ in range(already_provisioned):
        make_device(organization, device_type, state="provisioned")
    return organization, [make_device(organization, device_type).pk for _ in range(waiting)]


def test_fifty_parallel_requests_at_ten_free_seats_provision_exactly_ten():
    organization, waiting = setup_organization(seats=15, already_provisioned=5, waiting=THREADS)
    granted, refused = race(organization, [[pk] for pk in waiting])
    assert (granted, refused) == (10, THREADS - 10)
    assert count_licensed(organization) == 15
    assert Device.objects.filter(pk__in=waiting, state="provisioning").count() == 10


def test_parallel_batches_never_split_or_overshoot():
    """Batches of 3 at 10 free seats: three fit (9 seats), the rest are refused whole."""
    organization, waiting = setup_organization(seats=10, already_provisioned=0, waiting=60)
    batches = [waiting[i : i + 3] for i in range(0, 60, 3)]
    granted, refused = race(organization, batches)
    assert (granted, refused) == (3, len(batches) - 3)
    assert count_licensed(organization) == 9


def test_fifty_parallel_provision_actions_at_ten_free_seats_start_exactly_ten(settings):
    """The whole ``operations.start`` (plan, lock, reserve, move, write the operations)
    fifty times at once, one device each, as fifty users clicking Provision together.

    The gateway is offline, so nothing is enqueued, and the channel layer is in memory:
    the race is over seats, in the database only.
    """
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    organization = make_organization()
    make_license(organization, 15)
    user = make_member(organization, ["administrator"])
    gateway = make_gateway(organization, is_online=False, secret="s" * 32)
    device_type = make_device_type()
    for _ in range(5):
        make_device(organization, device_type, state="provisioned", gateway=gateway)
    waiting = [make_device(organization, device_type, gateway=gateway).pk for _ in range(THREADS)]
    barrier = threading.Barrier(THREADS)

    def provision(pk):
        try:
            barrier.wait(timeout=30)
            devices = Device.objects.for_organization(organization).filter(pk=pk)
            operations.start(organization, user, Action.PROVISION, devices, f"device {pk}")
            return "started"
        except CapacityExceeded:
            return "refused"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        outcomes = Counter(pool.map(provision, waiting))
    assert outcomes == {"started": 10, "refused": THREADS - 10}
    assert BulkOperation.objects.filter(organization=organization).count() == 10
    assert Operation.objects.filter(organization=organization).count() == 10
    assert Device.objects.filter(pk__in=waiting, state="provisioning").count() == 10
    assert count_licensed(organization) == 15
