"""The device lifecycle: every (state, action) pair, conditional updates, bulk moves.

``EXPECTED`` below is written out by hand from DESIGN.md's sketch and the comments in
``devices/lifecycle.py``, with plain strings rather than the enums, so that an edit to
``TRANSITIONS`` (or to a choice value) fails here until somebody decides it on purpose.
"""

import itertools

import pytest
from django.db import connection
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from devices import lifecycle
from devices.choices import DeviceState
from devices.lifecycle import (
    LICENSED_STATES,
    MANAGED_STATES,
    TRANSITIONS,
    Action,
    TransitionNotAllowed,
)
from devices.models import Device
from tests.factories import make_device, make_device_type, make_organization

STATES = [
    "discovered",
    "enrolling",
    "provisioning",
    "provisioned",
    "deprovisioning",
    "deprovisioned",
    "failed",
    "unenroll_pending",
    "unenrolled",
]
ACTIONS = [
    "provision",
    "deprovision",
    "reprovision",
    "enroll",
    "replace",
    "delete",
    "unenroll",
    "unenroll_ack",
    "discover",
    "succeed",
    "fail",
]

# (from state, action) -> to state. Every pair not listed here is forbidden.
EXPECTED = {
    # provisioning
    ("discovered", "provision"): "provisioning",
    ("deprovisioned", "provision"): "provisioning",
    ("failed", "provision"): "provisioning",
    ("provisioning", "succeed"): "provisioned",
    ("provisioning", "fail"): "failed",
    # reprovisioning: ours again, or a discovered device provisioned elsewhere
    ("provisioned", "reprovision"): "provisioning",
    ("discovered", "reprovision"): "provisioning",
    ("failed", "reprovision"): "provisioning",
    # deprovisioning
    ("provisioned", "deprovision"): "deprovisioning",
    ("failed", "deprovision"): "deprovisioning",
    ("deprovisioning", "succeed"): "deprovisioned",
    ("deprovisioning", "fail"): "failed",
    # enrollment
    ("discovered", "enroll"): "enrolling",
    ("unenrolled", "enroll"): "enrolling",
    ("failed", "enroll"): "enrolling",
    ("enrolling", "succeed"): "provisioned",
    ("enrolling", "fail"): "failed",
    # replace: same record, new hardware, provisioned afresh
    ("provisioned", "replace"): "provisioning",
    ("failed", "replace"): "provisioning",
    # any managed state -> delete -> unenroll pending -> device acks -> unenrolled
    ("enrolling", "delete"): "unenroll_pending",
    ("provisioning", "delete"): "unenroll_pending",
    ("provisioned", "delete"): "unenroll_pending",
    ("deprovisioning", "delete"): "unenroll_pending",
    ("deprovisioned", "delete"): "unenroll_pending",
    ("failed", "delete"): "unenroll_pending",
    (
        "unenroll_pending",
        "unenroll",
    ): "unenroll_pending",  # sent; waits for the ack
    ("unenroll_pending", "unenroll_ack"): "unenrolled",
    # an unenrolled device that says hello again is a discovery like any other
    ("unenrolled", "discover"): "discovered",
}

ALL_PAIRS = list(itertools.product(STATES, ACTIONS))
ALLOWED_PAIRS = [pair for pair in ALL_PAIRS if pair in EXPECTED]
FORBIDDEN_PAIRS = [pair for pair in ALL_PAIRS if pair not in EXPECTED]


def _ids(pairs):
    return [f"{state}-{action}" for state, action in pairs]


def from_states(action):
    return {state for (state, a) in EXPECTED if a == action}


# --- the table itself -------------------------------------------------------------


def test_states_and_actions_are_the_ones_this_file_knows():
    assert [s.value for s in DeviceState] == STATES
    assert sorted(a.value for a in Action) == sorted(ACTIONS)


def test_expected_table_only_uses_known_states_and_actions():
    for (state, action), target in EXPECTED.items():
        assert state in STATES and target in STATES and action in ACTIONS


def test_transitions_table_is_exactly_the_expected_table():
    actual = {(str(s), str(a)): str(t) for (s, a), t in TRANSITIONS.items()}
    missing = {pair: t for pair, t in EXPECTED.items() if actual.get(pair) != t}
    extra = {pair: t for pair, t in actual.items() if pair not in EXPECTED}
    assert not missing and not extra, f"missing or different: {missing}; unexpected: {extra}"


@pytest.mark.parametrize(("state", "action"), ALLOWED_PAIRS, ids=_ids(ALLOWED_PAIRS))
def test_allowed_pair(state, action):
    assert lifecycle.can(state, action) is True
    assert lifecycle.next_state(state, action) == EXPECTED[(state, action)]
    assert lifecycle.reason_forbidden(state, action) is None
    assert action in lifecycle.allowed_actions(state)
    assert state in lifecycle.states_allowing(action)


@pytest.mark.parametrize(("state", "action"), FORBIDDEN_PAIRS, ids=_ids(FORBIDDEN_PAIRS))
def test_forbidden_pair(state, action):
    assert lifecycle.can(state, action) is False
    assert action not in lifecycle.allowed_actions(state)
    assert state not in lifecycle.states_allowing(action)
    with pytest.raises(TransitionNotAllowed) as excinfo:
        lifecycle.next_state(state, action)
    error = excinfo.value
    assert (error.state, error.action) == (state, action)
    message = str(error)
    # A sentence for people: capital, names the state by its label, full stop; no codes.
    assert message == (
        f"A device that is {DeviceState(state).label.lower()} cannot "
        f"{lifecycle.REFUSAL_PHRASES[action]}."
    )
    assert message[0].isupper() and message.endswith(".")
    assert "_" not in message
    assert lifecycle.reason_forbidden(state, action) == message


def test_forbidden_messages_read_as_sentences():
    with pytest.raises(
        TransitionNotAllowed, match=r"^A device that is provisioned cannot be provisioned\.$"
    ):
        lifecycle.next_state("provisioned", "provision")
    assert (
        lifecycle.reason_forbidden("unenroll_pending", "delete")
        == "A device that is unenroll pending cannot be deleted."
    )


# Actions that are events (a result arrived, a device said hello) rather than verbs.
EVENT_ACTIONS = [
    ("discovered", "succeed"),
    ("discovered", "fail"),
    ("discovered", "unenroll_ack"),
    ("provisioned", "discover"),
]


@pytest.mark.parametrize(("state", "action"), EVENT_ACTIONS, ids=_ids(EVENT_ACTIONS))
def test_forbidden_event_messages_are_grammatical(state, action):
    message = lifecycle.reason_forbidden(state, action)
    assert f"cannot {Action(action).label.lower()}" not in message


def test_transition_not_allowed_is_a_value_error():
    # Callers that validate input with ``except ValueError`` catch it too.
    assert issubclass(TransitionNotAllowed, ValueError)


@pytest.mark.parametrize("state", STATES)
def test_allowed_actions_per_state(state):
    expected = {action for (s, action) in EXPECTED if s == state}
    assert lifecycle.allowed_actions(state) == expected


@pytest.mark.parametrize("action", ACTIONS)
def test_states_allowing_per_action(action):
    assert lifecycle.states_allowing(action) == from_states(action)


def test_no_action_chains_within_itself():
    """apply_bulk runs one UPDATE per from-state in turn; if an action led from one of
    its from-states into another, a device could be moved twice by one bulk action.
    (A move that stays put, unenroll, may run twice: it lands where it was.)"""
    for action in ACTIONS:
        targets = {
            EXPECTED[(state, action)]
            for state in from_states(action)
            if EXPECTED[(state, action)] != state
        }
        assert not targets & from_states(action), action


def test_every_state_is_reachable_from_discovered():
    reached, frontier = {"discovered"}, ["discovered"]
    while frontier:
        state = frontier.pop()
        for (s, _action), target in EXPECTED.items():
            if s == state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(STATES)


def test_every_state_has_a_way_out():
    # No dead ends: a device can always be acted on or will report a result.
    for state in STATES:
        assert lifecycle.allowed_actions(state), state


def test_managed_states():
    assert {
        "enrolling",
        "provisioning",
        "provisioned",
        "deprovisioning",
        "deprovisioned",
        "failed",
    } == MANAGED_STATES
    assert from_states("delete") == MANAGED_STATES


def test_initial_states():
    assert lifecycle.INITIAL_STATES == {"discovered": "discovered", "enrolled": "enrolling"}


# --- licensed states ---------------------------------------------------------------


def test_licensed_states_are_the_three_of_the_design():
    assert {"provisioned", "provisioning", "enrolling"} == LICENSED_STATES
    assert LICENSED_STATES <= MANAGED_STATES


# Which transitions take a seat and which give one back. The licensing module
# reserves and releases on exactly these, so they are pinned here.
TAKES_A_SEAT = {
    ("discovered", "provision"),
    ("deprovisioned", "provision"),
    ("failed", "provision"),
    ("discovered", "reprovision"),
    ("failed", "reprovision"),
    ("discovered", "enroll"),
    ("unenrolled", "enroll"),
    ("failed", "enroll"),
    ("failed", "replace"),
}
GIVES_A_SEAT_BACK = {
    ("provisioning", "fail"),
    ("enrolling", "fail"),
    ("provisioned", "deprovision"),
    ("enrolling", "delete"),
    ("provisioning", "delete"),
    ("provisioned", "delete"),
}


def test_transitions_that_take_or_give_back_a_seat():
    takes, gives = set(), set()
    for (state, action), target in TRANSITIONS.items():
        before, after = state in LICENSED_STATES, target in LICENSED_STATES
        if after and not before:
            takes.add((str(state), str(action)))
        elif before and not after:
            gives.add((str(state), str(action)))
    assert takes == TAKES_A_SEAT
    assert gives == GIVES_A_SEAT_BACK


@pytest.mark.django_db
def test_licensed_states_count_in_a_query():
    org, device_type = make_organization(), make_device_type()
    for state in STATES:
        make_device(org, device_type, state=state)
    assert Device.objects.filter(state__in=LICENSED_STATES).count() == 3


# --- split_by_permission -----------------------------------------------------------


def test_split_by_permission_partitions_and_explains():
    pairs = [(1, "discovered"), (2, "provisioned"), (3, "failed"), (4, "unenrolled")]
    allowed, refused = lifecycle.split_by_permission(pairs, "provision")
    assert allowed == [1, 3]
    assert refused == {
        2: "A device that is provisioned cannot be provisioned.",
        4: "A device that is unenrolled cannot be provisioned.",
    }


@pytest.mark.parametrize("action", ACTIONS)
def test_split_by_permission_over_every_state(action):
    pairs = list(enumerate(STATES))
    allowed, refused = lifecycle.split_by_permission(iter(pairs), action)
    assert [STATES[pk] for pk in allowed] == [s for s in STATES if (s, action) in EXPECTED]
    assert set(refused) == {pk for pk, s in pairs if (s, action) not in EXPECTED}
    assert all(reason.startswith("A device that is ") for reason in refused.values())


def test_split_by_permission_of_nothing():
    assert lifecycle.split_by_permission([], "delete") == ([], {})


# --- apply: one device, conditional update -----------------------------------------


@pytest.fixture
def device_type():
    return make_device_type()


def _row(device):
    return Device.objects.values("state", "state_changed_at", "updated_at", "location").get(
        pk=device.pk
    )


@pytest.mark.django_db
def test_apply_moves_the_device_and_stamps_it(org, device_type):
    device = make_device(org, device_type)
    before = _row(device)
    assert lifecycle.apply(device, Action.PROVISION, location="Roof") is True
    after = _row(device)
    assert after["state"] == device.state == "provisioning"
    assert after["location"] == device.location == "Roof"
    assert after["state_changed_at"] == device.state_changed_at > before["state_changed_at"]
    assert after["updated_at"] == device.updated_at == device.state_changed_at


@pytest.mark.django_db
def test_apply_touches_only_its_device(org, device_type):
    device, other = make_device(org, device_type), make_device(org, device_type)
    lifecycle.apply(device, Action.ENROLL)
    assert _row(other)["state"] == "discovered"


@pytest.mark.django_db
def test_apply_forbidden_raises_and_writes_nothing(org, device_type, django_assert_num_queries):
    device = make_device(org, device_type, state="provisioned")
    before = _row(device)
    with django_assert_num_queries(0), pytest.raises(TransitionNotAllowed):
        lifecycle.apply(device, Action.ENROLL, location="Nowhere")
    assert _row(device) == before
    assert device.state == "provisioned"


@pytest.mark.django_db
def test_apply_on_a_stale_device_loses_and_leaves_the_row_alone(org, device_type):
    device = make_device(org, device_type)  # in memory: discovered
    Device.objects.filter(pk=device.pk).update(state="failed")  # somebody else moved it
    before = _row(device)
    assert lifecycle.apply(device, Action.ENROLL, location="Stale") is False
    assert _row(device) == before
    assert device.state == "discovered"  # the caller's copy is not pretended into a new state
    assert device.location == ""


@pytest.mark.django_db
def test_two_writers_race_and_only_one_wins(org, device_type, django_assert_num_queries):
    first = make_device(org, device_type, state="provisioned")
    second = Device.objects.get(pk=first.pk)
    assert lifecycle.apply(first, Action.DEPROVISION) is True
    with django_assert_num_queries(1):
        assert lifecycle.apply(second, Action.DELETE) is False
    assert _row(first)["state"] == "deprovisioning"


@pytest.mark.django_db
def test_apply_is_one_update(org, device_type, django_assert_num_queries):
    device = make_device(org, device_type)
    with django_assert_num_queries(1) as captured:
        lifecycle.apply(device, Action.PROVISION)
    sql = captured.captured_queries[0]["sql"].upper()
    assert sql.startswith("UPDATE") and "STATE" in sql.split("WHERE", 1)[1]


# --- apply_bulk --------------------------------------------------------------------


@pytest.fixture
def two_of_every_state(org, device_type):
    """Two devices in every state in ``org``, and one of each in another organization."""
    other_org = make_organization()
    ours = {
        state: [make_device(org, device_type, state=state) for _ in range(2)] for state in STATES
    }
    theirs = {state: make_device(other_org, device_type, state=state) for state in STATES}
    return ours, theirs


@pytest.mark.django_db
@pytest.mark.parametrize("action", ACTIONS)
def test_apply_bulk_moves_only_allowed_devices(
    action, org, two_of_every_state, django_assert_max_num_queries
):
    ours, theirs = two_of_every_state
    with django_assert_max_num_queries(len(from_states(action))):
        moved = lifecycle.apply_bulk(Device.objects.for_organization(org), action)
    assert moved == {state: 2 for state in from_states(action)}
    for state, devices in ours.items():
        expected = EXPECTED.get((state, action), state)
        for device in devices:
            assert _row(device)["state"] == expected, (state, action)
    for state, device in theirs.items():
        assert _row(device)["state"] == state  # another organization is never touched


@pytest.mark.django_db
def test_apply_bulk_respects_the_selection_and_sets_fields(org, device_type):
    picked = [make_device(org, device_type, state="failed") for _ in range(3)]
    left = make_device(org, device_type, state="failed")
    wrong_state = make_device(org, device_type, state="unenroll_pending")
    wrong_before = _row(wrong_state)
    selection = Device.objects.filter(pk__in=[d.pk for d in picked] + [wrong_state.pk])
    moved = lifecycle.apply_bulk(selection, Action.REPLACE, location="Hall")
    assert moved == {"failed": 3}
    assert {(_row(d)["state"], _row(d)["location"]) for d in picked} == {("provisioning", "Hall")}
    assert _row(left)["state"] == "failed"
    assert _row(wrong_state) == wrong_before


@pytest.mark.django_db
def test_apply_bulk_stamps_moved_devices_only(org, device_type):
    moving = make_device(org, device_type, state="provisioning")
    staying = make_device(org, device_type, state="provisioned")
    staying_before = _row(staying)
    lifecycle.apply_bulk(Device.objects.all(), Action.SUCCEED)
    assert _row(staying) == staying_before
    row = _row(moving)
    assert row["state"] == "provisioned" and row["updated_at"] == row["state_changed_at"]


@pytest.mark.django_db
def test_apply_bulk_on_nothing(django_assert_max_num_queries):
    with django_assert_max_num_queries(len(from_states("delete"))):
        assert lifecycle.apply_bulk(Device.objects.none(), Action.DELETE) == {}


# --- stateful: random walks through the table against the database -----------------


class LifecycleMachine(RuleBasedStateMachine):
    """One real device row and a model of where the table says it must be."""

    organization = None  # set by the test before running
    device_type = None

    @initialize(start=st.sampled_from(STATES))
    def create_device(self, start):
        self.device = make_device(self.organization, self.device_type, state=start)
        self.device.refresh_from_db()
        self.model_state = start

    def _snapshot(self):
        return _row(self.device)

    @rule(action=st.sampled_from(ACTIONS))
    def act(self, action):
        expected = EXPECTED.get((self.model_state, action))
        if expected is None:
            before = self._snapshot()
            with pytest.raises(TransitionNotAllowed):
                lifecycle.apply(self.device, action)
            assert self._snapshot() == before
        else:
            assert lifecycle.apply(self.device, action) is True
            self.model_state = expected

    @rule(first=st.sampled_from(ACTIONS), second=st.sampled_from(ACTIONS))
    def race(self, first, second):
        """Another writer moves the row; our stale copy must then lose, not overwrite."""
        if (self.model_state, first) not in EXPECTED:
            return
        if EXPECTED[(self.model_state, first)] == self.model_state:
            return  # a move that stays put (unenroll: sent, still pending) leaves no one stale
        other = Device.objects.get(pk=self.device.pk)
        assert lifecycle.apply(other, first) is True
        self.model_state = EXPECTED[(self.model_state, first)]
        before = self._snapshot()
        if (self.device.state, second) in EXPECTED:
            assert lifecycle.apply(self.device, second) is False
        else:
            with pytest.raises(TransitionNotAllowed):
                lifecycle.apply(self.device, second)
        assert self._snapshot() == before
        self.device.refresh_from_db()

    @rule(action=st.sampled_from(ACTIONS))
    def bulk(self, action):
        moved = lifecycle.apply_bulk(Device.objects.filter(pk=self.device.pk), action)
        expected = EXPECTED.get((self.model_state, action))
        if expected is None:
            assert moved == {}
        else:
            assert moved == {self.model_state: 1}
            self.model_state = expected
        self.device.refresh_from_db()

    @invariant()
    def database_matches_the_model(self):
        state = Device.objects.values_list("state", flat=True).get(pk=self.device.pk)
        assert state == self.model_state
        assert state in STATES
        assert self.device.state == state


@pytest.mark.django_db
def test_lifecycle_state_machine(org, device_type):
    machine = type(
        "LifecycleMachineHere",
        (LifecycleMachine,),
        {"organization": org, "device_type": device_type},
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=50,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    assert connection.in_atomic_block  # everything ran inside the test's transaction


def test_a_device_provisioned_elsewhere_may_be_reprovisioned_not_provisioned():
    elsewhere = {"reported_state": "provisioned"}
    assert lifecycle.reason_forbidden(DeviceState.DISCOVERED, Action.PROVISION, **elsewhere) == (
        lifecycle.PROVISIONED_ELSEWHERE
    )
    assert (
        lifecycle.reason_forbidden(DeviceState.DISCOVERED, Action.REPROVISION, **elsewhere) is None
    )
    assert lifecycle.reason_forbidden(DeviceState.DISCOVERED, Action.PROVISION) is None
    # Once ours, what it reports no longer decides.
    assert lifecycle.reason_forbidden(DeviceState.FAILED, Action.PROVISION, **elsewhere) is None
