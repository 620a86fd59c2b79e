"""The reconciler's pass: re-send the unanswered, give up what waited too long, dispatch.

The database is the source of truth; Redis only carries jobs. After Redis loses its
jobs, this is what puts them back.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from devices.choices import OPEN_OPERATION_STATES, OperationState
from devices.ingest import Changes
from devices.models import Operation
from devices.operations.base import config
from devices.operations.finish import finish, requeue
from gateway.codes import ResultCode


@dataclass
class Reconciled:
    resent: int = 0
    retried_later: int = 0
    gave_up: int = 0
    expired: int = 0
    gateways: list[int] = field(default_factory=list)

    def __bool__(self):
        return bool(self.resent or self.gave_up or self.expired or self.gateways)


def reconcile(now: datetime | None = None) -> tuple[Reconciled, Changes]:
    """One pass: expire, re-send the unanswered, fail after the retry budget, dispatch.

    Idempotent and safe to run from several processes: every step is a conditional
    UPDATE.
    """
    now = now or timezone.now()
    cfg = config()
    result, changes = Reconciled(), Changes()
    with transaction.atomic():
        result.expired = finish(
            Q(expires_at__lt=now),
            OperationState.FAILED,
            now,
            changes,
            code="expired",
            error="Gave up: the gateway did not take the operation before its deadline.",
        )
        overdue = Q(state=OperationState.SENT, deadline__lt=now)
        result.gave_up = finish(
            overdue & Q(attempts__gte=cfg["MAX_ATTEMPTS"]),
            OperationState.FAILED,
            now,
            changes,
            code=ResultCode.TIMEOUT,
            error=f"No answer from the gateway after {cfg['MAX_ATTEMPTS']} attempts.",
        )
        # Same generation: if the gateway did it and only the answer was lost, it
        # answers again from its memory instead of doing it twice.
        result.resent = requeue(overdue, now, next_attempt_at=now, bump_generation=False)
        due = (
            Operation.objects.filter(
                state=OperationState.QUEUED, next_attempt_at__lte=now, gateway__is_online=True
            )
            .values_list("gateway_id", flat=True)
            .distinct()
        )
        result.gateways = sorted(set(due))
    return result, changes


def open_counts(organization=None, bulk=None) -> dict[str, int]:
    """Operations still open, by state, of an organization or of one bulk operation."""
    ops = Operation.objects.filter(state__in=OPEN_OPERATION_STATES)
    ops = ops.filter(bulk=bulk) if bulk is not None else ops.for_organization(organization)
    rows = ops.values("state").annotate(n=Count("id")).order_by()
    counts = {"queued": 0, "sent": 0} | {r["state"]: r["n"] for r in rows}
    return counts | {"open": counts["queued"] + counts["sent"]}
