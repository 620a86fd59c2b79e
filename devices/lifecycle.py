"""The device lifecycle: the one table that decides every state transition.

Views, jobs, the bridge and the API ask this module; nobody assigns ``Device.state``
by hand. Transitions are applied with conditional UPDATEs (``WHERE state = <from>``),
so two writers racing on the same device cannot both win.
"""

from collections.abc import Iterable

from django.db import models
from django.utils import timezone

from devices.choices import DeviceState as S
from gateway.codes import DeviceLinkState


class Action(models.TextChoices):
    PROVISION = "provision", "Provision"
    DEPROVISION = "deprovision", "Deprovision"
    REPROVISION = "reprovision", "Reprovision"
    ENROLL = "enroll", "Enroll"
    REPLACE = "replace", "Replace"
    DELETE = "delete", "Delete (unenroll)"
    UNENROLL = "unenroll", "Send the unenrollment"
    UNENROLL_ACK = "unenroll_ack", "Unenrollment acknowledged"
    DISCOVER = "discover", "Discovered again"
    SUCCEED = "succeed", "Operation succeeded"
    FAIL = "fail", "Operation failed"


A = Action

# Devices under management: deleting one sends it an unenrollment.
MANAGED_STATES = frozenset(
    {S.ENROLLING, S.PROVISIONING, S.PROVISIONED, S.DEPROVISIONING, S.DEPROVISIONED, S.FAILED}
)

# License capacity counts these (DESIGN.md). A deprovision frees its seat when it
# starts, so freeing capacity never waits on a slow or offline gateway.
LICENSED_STATES = frozenset({S.PROVISIONED, S.PROVISIONING, S.ENROLLING})

TRANSITIONS: dict[tuple[str, str], str] = {
    # provisioning
    (S.DISCOVERED, A.PROVISION): S.PROVISIONING,
    (S.DEPROVISIONED, A.PROVISION): S.PROVISIONING,
    (S.FAILED, A.PROVISION): S.PROVISIONING,
    (S.PROVISIONING, A.SUCCEED): S.PROVISIONED,
    (S.PROVISIONING, A.FAIL): S.FAILED,
    # reprovisioning: ours again, or a discovered device provisioned elsewhere
    (S.PROVISIONED, A.REPROVISION): S.PROVISIONING,
    (S.DISCOVERED, A.REPROVISION): S.PROVISIONING,
    (S.FAILED, A.REPROVISION): S.PROVISIONING,
    # deprovisioning
    (S.PROVISIONED, A.DEPROVISION): S.DEPROVISIONING,
    (S.FAILED, A.DEPROVISION): S.DEPROVISIONING,
    (S.DEPROVISIONING, A.SUCCEED): S.DEPROVISIONED,
    (S.DEPROVISIONING, A.FAIL): S.FAILED,
    # enrollment
    (S.DISCOVERED, A.ENROLL): S.ENROLLING,
    (S.UNENROLLED, A.ENROLL): S.ENROLLING,
    (S.FAILED, A.ENROLL): S.ENROLLING,
    (S.ENROLLING, A.SUCCEED): S.PROVISIONED,
    (S.ENROLLING, A.FAIL): S.FAILED,
    # replacing a failed unit: same record, new hardware, provisioned afresh
    (S.PROVISIONED, A.REPLACE): S.PROVISIONING,
    (S.FAILED, A.REPLACE): S.PROVISIONING,
    # unenrollment
    **{(state, A.DELETE): S.UNENROLL_PENDING for state in MANAGED_STATES},
    (S.UNENROLL_PENDING, A.UNENROLL): S.UNENROLL_PENDING,  # sent; waits for the ack
    (S.UNENROLL_PENDING, A.UNENROLL_ACK): S.UNENROLLED,
    (S.UNENROLLED, A.DISCOVER): S.DISCOVERED,
}

# The state a brand-new record starts in, by how it came to exist: reported by a
# gateway (discovery, or an enrollment that creates the record), or enrolled by the app.
INITIAL_STATES = {"discovered": S.DISCOVERED, "enrolled": S.ENROLLING}

# A device the portal only discovered but that reports itself provisioned was set up by
# someone else: provisioning would fight that configuration, so only a reprovision (which
# replaces it on purpose) may take it over.
PROVISIONED_ELSEWHERE = (
    "It says it is provisioned already, but not by this portal: reprovision it to give it "
    "this portal's configuration."
)


# How a refusal reads: "A device that is <state> cannot <phrase>."
REFUSAL_PHRASES = {
    A.PROVISION: "be provisioned",
    A.DEPROVISION: "be deprovisioned",
    A.REPROVISION: "be reprovisioned",
    A.ENROLL: "be enrolled",
    A.REPLACE: "be replaced",
    A.DELETE: "be deleted",
    A.UNENROLL: "be sent an unenrollment, since it was not deleted",
    A.UNENROLL_ACK: "acknowledge an unenrollment",
    A.DISCOVER: "be discovered again",
    A.SUCCEED: "complete an operation, since none is running",
    A.FAIL: "fail an operation, since none is running",
}


# What an operation's answer does to its device: (on success, on failure). An
# unenrollment that failed leaves the device waiting; it is sent again on the next hello.
OUTCOMES = {A.UNENROLL: (A.UNENROLL_ACK, None)}
DEFAULT_OUTCOME = (A.SUCCEED, A.FAIL)


def outcome(kind: str, ok: bool) -> str | None:
    """The action an operation of ``kind`` applies to its device when it ends."""
    return OUTCOMES.get(kind, DEFAULT_OUTCOME)[0 if ok else 1]


class TransitionNotAllowed(ValueError):
    def __init__(self, state, action):
        self.state, self.action = state, action
        state_label = S(state).label.lower() if state in S.values else repr(state)
        phrase = REFUSAL_PHRASES.get(action, f"take the action {action!r}")
        super().__init__(f"A device that is {state_label} cannot {phrase}.")


def can(state: str, action: str) -> bool:
    return (state, action) in TRANSITIONS


def next_state(state: str, action: str) -> str:
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise TransitionNotAllowed(state, action) from None


def allowed_actions(state: str) -> set[str]:
    return {action for (from_state, action) in TRANSITIONS if from_state == state}


def states_allowing(action: str) -> set[str]:
    return {from_state for (from_state, a) in TRANSITIONS if a == action}


def reason_forbidden(state: str, action: str, *, reported_state: str = "") -> str | None:
    """None when allowed; otherwise the sentence a user sees next to the device.

    ``reported_state``: what the device last said of itself on its link (a
    ``gateway.codes.DeviceLinkState``), for the rule the state alone cannot decide.
    """
    if not can(state, action):
        return str(TransitionNotAllowed(state, action))
    if (
        action == A.PROVISION
        and state == S.DISCOVERED
        and reported_state == DeviceLinkState.PROVISIONED
    ):
        return PROVISIONED_ELSEWHERE
    return None


def apply(device, action: str, **fields) -> bool:
    """Move one device; False when somebody else moved it first (conditional UPDATE)."""
    new_state = next_state(device.state, action)
    now = timezone.now()
    updated = (
        type(device)
        .objects.filter(pk=device.pk, state=device.state)
        .update(state=new_state, state_changed_at=now, updated_at=now, **fields)
    )
    if updated:
        device.state, device.state_changed_at, device.updated_at = new_state, now, now
        for name, value in fields.items():
            setattr(device, name, value)
    return bool(updated)


def apply_bulk(queryset, action: str, **fields) -> dict[str, int]:
    """Move every device of ``queryset`` that may take ``action``: one UPDATE per from-state.

    Returns how many moved from each state; devices whose state forbids the action
    stay where they are (callers report them with ``reason_forbidden``).
    """
    now = timezone.now()
    moved = {}
    for from_state in sorted(states_allowing(action)):
        count = queryset.filter(state=from_state).update(
            state=TRANSITIONS[(from_state, action)], state_changed_at=now, updated_at=now, **fields
        )
        if count:
            moved[from_state] = count
    return moved


def split_by_permission(states: Iterable[tuple[int, str]], action: str):
    """Partition ``(pk, state)`` pairs into allowed pks and {pk: reason} for the rest."""
    allowed, refused = [], {}
    for pk, state in states:
        if can(state, action):
            allowed.append(pk)
        else:
            refused[pk] = reason_forbidden(state, action)
    return allowed, refused


def undo_bulk(queryset, action: str, from_state: str) -> int:
    """Put devices that took ``action`` from ``from_state`` back where they were.

    Only for operations cancelled before anything was sent: the device never heard of
    them, so its real state is still ``from_state``.
    """
    now = timezone.now()
    return queryset.filter(state=next_state(from_state, action)).update(
        state=from_state, state_changed_at=now, updated_at=now
    )
