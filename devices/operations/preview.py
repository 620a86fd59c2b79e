"""The preview of a bulk action: which devices would take it, which not and why, seats.

Read-only and three queries; ``starting.start`` runs the same plan again under row
locks, so what the user confirmed is what is checked when it starts.
"""

from collections import Counter
from dataclasses import dataclass, field

from devices import lifecycle
from devices.lifecycle import LICENSED_STATES
from devices.models import Gateway
from devices.operations.base import WIRE_KIND
from licensing import capacity

NO_GATEWAY = "It has no gateway to reach it through."
NOT_FOUND = "No such device in this organization."


def takes_seat(from_state: str, action: str) -> bool:
    return (
        from_state not in LICENSED_STATES
        and lifecycle.next_state(from_state, action) in LICENSED_STATES
    )


@dataclass
class GatewayShare:
    id: int
    name: str
    online: bool
    devices: int = 0


@dataclass
class Plan:
    action: str
    requested: int = 0
    eligible: list[dict] = field(default_factory=list)  # id, serial_number, state, gateway_id
    skipped: list[dict] = field(default_factory=list)  # id, serial, reason
    gateways: list[GatewayShare] = field(default_factory=list)
    seats_needed: int = 0
    seats_free: int | None = None
    seats_total: int = 0

    @property
    def waiting(self) -> int:
        """Eligible devices whose gateway is offline: they wait, they do not fail."""
        return sum(g.devices for g in self.gateways if not g.online)

    @property
    def over_capacity(self) -> bool:
        return self.seats_free is not None and self.seats_needed > self.seats_free

    @property
    def seats_left(self) -> int | None:
        return None if self.seats_free is None else self.seats_free - self.seats_needed

    @property
    def skipped_reasons(self) -> list[tuple[str, int]]:
        return Counter(s["reason"] for s in self.skipped).most_common()


def plan(organization, action: str, devices, *, lock: bool = False, requested_ids=()) -> Plan:
    """What ``action`` on ``devices`` (a queryset already scoped) would do; three queries.

    ``requested_ids``: the ids the user named; those not in ``devices`` (unknown, or of
    another organization — indistinguishable on purpose) are skipped with a reason.
    """
    if action not in WIRE_KIND:
        raise ValueError(f"{action!r} is not a bulk action")
    rows = devices.order_by("pk")
    if lock:
        # NO KEY: events keep flowing — inserting a DeviceEvent takes a KEY SHARE lock
        # on its device (the foreign key check), which a plain FOR UPDATE would block.
        rows = rows.select_for_update(no_key=True)
    rows = list(rows.values("id", "serial_number", "state", "gateway_id", "reported_state"))
    result = Plan(action=action, requested=max(len(rows), len(set(requested_ids))))
    found = {row["id"] for row in rows}
    for pk in dict.fromkeys(requested_ids):
        if pk not in found:
            result.skipped.append({"id": pk, "serial": f"#{pk}", "reason": NOT_FOUND})
    by_gateway: Counter = Counter()
    for row in rows:
        reason = lifecycle.reason_forbidden(
            row["state"], action, reported_state=row["reported_state"]
        )
        if reason is None and row["gateway_id"] is None:
            reason = NO_GATEWAY
        if reason:
            result.skipped.append(
                {"id": row["id"], "serial": row["serial_number"], "reason": reason}
            )
            continue
        result.eligible.append(row)
        by_gateway[row["gateway_id"]] += 1
        result.seats_needed += takes_seat(row["state"], action)
    gateways = Gateway.objects.filter(pk__in=by_gateway).values_list("id", "name", "is_online")
    result.gateways = sorted(
        (GatewayShare(gid, name, online, by_gateway[gid]) for gid, name, online in gateways),
        key=lambda g: (-g.devices, g.name),
    )
    if result.seats_needed:
        usage = capacity.usage(organization)
        result.seats_free, result.seats_total = usage.free, usage.total
    return result
