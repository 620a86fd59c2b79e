"""Seats: how many devices an organization's licenses allow, and reserving them safely.

Licensing knows no device (DESIGN.md). Whoever puts devices into a licensed state
passes a *used counter* — ``fn(organization) -> int``, the number of the organization's
devices that hold a seat now — either to each call or once, from its
``AppConfig.ready``, through ``set_used_counter``.

**Reserving.** ``reserve`` runs inside the caller's transaction. It takes the
organization's row lock (``SELECT … FOR UPDATE``; on SQLite the IMMEDIATE transaction
mode already serializes writers), counts the seats in use *after* getting the lock,
and refuses when the request does not fit. The caller then moves its devices into a
licensed state in the same transaction; the lock is held until commit, so the next
request counts them. Concurrent requests therefore queue on the lock and can never
overshoot. (This relies on PostgreSQL's default READ COMMITTED isolation, where the
count after the lock sees every commit before it; ``tests/test_licensing_concurrency.py``
races 50 requests at 10 free seats to prove it.) ``n`` is the number of devices that will *enter* a licensed state (a
reprovision of a provisioned device takes no new seat).

**Releasing is implicit.** Seats are not a stored counter: ``used`` is always counted
from device states. A device that leaves a licensed state (deprovision, failure,
deletion) frees its seat at that moment, with nothing to release and nothing that
can drift — a crashed job or a lost message cannot leak a seat. The price is one
``COUNT`` per reservation, on an indexed column.

Capacity is the sum of the licenses valid today; an expired license stops counting,
which can leave ``used`` above ``total`` (``free`` is then 0 and nothing new fits).
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Sum
from django.db.models.functions import Coalesce

from licensing.models import License
from portal.errors import Conflict
from portal.models import Organization

UsedCounter = Callable[[Organization], int]

_used_counter: UsedCounter | None = None


def set_used_counter(counter: UsedCounter | None) -> None:
    """Register the function that counts an organization's seats in use (or None to clear)."""
    global _used_counter
    _used_counter = counter


def get_used_counter() -> UsedCounter | None:
    return _used_counter


def _counter(used_counter: UsedCounter | None) -> UsedCounter:
    counter = used_counter or _used_counter
    if counter is None:
        raise ImproperlyConfigured(
            "No used-seat counter: pass used_counter, or call "
            "licensing.capacity.set_used_counter() from the devices app's AppConfig.ready."
        )
    return counter


class CapacityExceeded(Conflict):
    """The request does not fit; ``str(error)`` says how many would."""

    code = "capacity_exceeded"

    def __init__(self, requested: int, used: int, total: int):
        self.requested, self.used, self.total = requested, used, total
        self.free = max(total - used, 0)
        devices = "device" if requested == 1 else "devices"
        super().__init__(
            f"Only {self.free} of the requested {requested} {devices} can be provisioned: "
            f"{used} of {total} seats are in use."
        )

    def details(self) -> dict:
        return {
            "seats_requested": self.requested,
            "seats_used": self.used,
            "seats_total": self.total,
            "seats_free": self.free,
        }


@dataclass(frozen=True)
class Reservation:
    """Seats granted inside the caller's transaction; they count once devices move."""

    organization: Organization
    requested: int
    used: int  # before this reservation
    total: int

    @property
    def free_before(self) -> int:
        return max(self.total - self.used, 0)

    @property
    def free_after(self) -> int:
        return self.free_before - self.requested


@dataclass(frozen=True)
class Usage:
    """The Licenses widget's numbers. ``used`` is None when no counter is registered."""

    used: int | None
    total: int
    licenses: list[License]

    @property
    def free(self) -> int | None:
        return None if self.used is None else max(self.total - self.used, 0)

    @property
    def over_capacity(self) -> bool:
        return self.used is not None and self.used > self.total


def capacity(organization, today=None) -> int:
    """Seats the organization's valid licenses allow (one aggregate query)."""
    licenses = License.objects.for_organization(organization).valid_on(today)
    return licenses.aggregate(total=Coalesce(Sum("capacity"), 0))["total"]


def reserve(organization, n: int, used_counter: UsedCounter | None = None, today=None):
    """Reserve ``n`` seats, or raise ``CapacityExceeded``; call inside ``transaction.atomic``.

    Returns a ``Reservation``. The caller must move the devices into a licensed state
    before its transaction commits — that is what holds the seats.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"Reserve a whole number of seats, not {n!r}.")
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError(
            "reserve() must run inside the transaction that moves the devices."
        )
    counter = _counter(used_counter)
    # Serialises reservations per organization. NO KEY: rows that merely point at the
    # organization (events arriving meanwhile: a foreign key check) are not held up.
    Organization.objects.select_for_update(no_key=True).only("pk").get(pk=organization.pk)
    used, total = counter(organization), capacity(organization, today)
    if used + n > total:
        raise CapacityExceeded(n, used, total)
    return Reservation(organization, n, used, total)


def usage(organization, used_counter: UsedCounter | None = None, today=None) -> Usage:
    """Used, total and the organization's licenses (newest first), for display only."""
    counter = used_counter or _used_counter
    used = counter(organization) if counter else None
    licenses = list(License.objects.for_organization(organization).select_related("uploaded_by"))
    return Usage(used=used, total=capacity(organization, today), licenses=licenses)
