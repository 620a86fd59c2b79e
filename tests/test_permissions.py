"""Every role combination against every rule in ``portal.permissions``, as a truth table.

The table is written out by hand: adding a rule, or changing who may do what, fails
here until the table says the same.
"""

import itertools

import pytest

from portal import permissions
from portal.choices import Role
from tests.factories import make_membership, make_organization, make_user

ADMIN, DM, IOT = "administrator", "device_manager", "iot_manager"

RULE_NAMES = [
    "view",
    "enroll",
    "device_actions",
    "manage_groups",
    "manage_gateways",
    "manage_members",
    "manage_licenses",
    "view_audit",
]

T, F = True, False
# roles held                 view enroll dev_act groups gateways members licenses audit
TRUTH_TABLE = {
    frozenset():              (T,   F,     F,      F,     F,       F,      F,       F),
    frozenset({ADMIN}):       (T,   T,     T,      T,     T,       T,      T,       T),
    frozenset({DM}):          (T,   F,     T,      T,     F,       F,      F,       F),
    frozenset({IOT}):         (T,   F,     F,      F,     T,       F,      F,       F),
    frozenset({ADMIN, DM}):   (T,   T,     T,      T,     T,       T,      T,       T),
    frozenset({ADMIN, IOT}):  (T,   T,     T,      T,     T,       T,      T,       T),
    frozenset({DM, IOT}):     (T,   T,     T,      T,     T,       F,      F,       F),
    frozenset({ADMIN, DM, IOT}): (T, T,    T,      T,     T,       T,      T,       T),
}  # fmt: skip

CASES = [
    (roles, rule, row[i]) for roles, row in TRUTH_TABLE.items() for i, rule in enumerate(RULE_NAMES)
]


def _label(roles):
    return "+".join(sorted(roles)) or "no-role"


def test_roles_are_the_three_role_groups():
    assert [r.value for r in Role] == [ADMIN, DM, IOT]


def test_table_has_every_role_combination():
    subsets = {
        frozenset(combo) for n in range(4) for combo in itertools.combinations([ADMIN, DM, IOT], n)
    }
    assert set(TRUTH_TABLE) == subsets and len(subsets) == 8


def test_rules_are_exactly_the_ones_in_the_table():
    assert list(permissions.RULES) == RULE_NAMES


@pytest.mark.parametrize(
    ("roles", "rule", "expected"),
    CASES,
    ids=[f"{_label(roles)}-{rule}" for roles, rule, _ in CASES],
)
def test_rule(roles, rule, expected):
    assert permissions.RULES[rule](roles) is expected
    assert permissions.allows(rule, roles) is expected
    # Any iterable of role values works, and so do the Role members themselves.
    assert permissions.allows(rule, sorted(roles)) is expected
    assert permissions.allows(rule, (Role(r) for r in roles)) is expected


@pytest.mark.parametrize("roles", list(TRUTH_TABLE), ids=[_label(r) for r in TRUTH_TABLE])
def test_capabilities_is_the_table_row(roles):
    assert permissions.capabilities(roles) == dict(zip(RULE_NAMES, TRUTH_TABLE[roles], strict=True))


def test_can_enroll_is_the_field_rule():
    """Administrator, or both Device Manager and IoT Manager — one of them is not enough."""
    assert permissions.can_enroll([ADMIN])
    assert permissions.can_enroll([DM, IOT])
    assert permissions.can_enroll([ADMIN, DM, IOT])
    assert not permissions.can_enroll([DM])
    assert not permissions.can_enroll([IOT])
    assert not permissions.can_enroll([])
    enrollers = {roles for roles in TRUTH_TABLE if permissions.can_enroll(roles)}
    assert enrollers == {roles for roles in TRUTH_TABLE if ADMIN in roles or {DM, IOT} <= roles}


def test_unknown_or_misspelt_roles_grant_nothing():
    for roles in (["superuser"], ["Administrator"], ["ADMINISTRATOR"], ["device manager", "iot"]):
        assert permissions.capabilities(roles) == dict(
            zip(RULE_NAMES, TRUTH_TABLE[frozenset()], strict=True)
        )


def test_unknown_rule_is_an_error_not_a_yes():
    with pytest.raises(KeyError):
        permissions.allows("delete_everything", [ADMIN])


def test_a_roles_iterator_is_read_once_safely():
    # capabilities() evaluates many rules; a one-shot iterator must not run dry after the first.
    assert permissions.capabilities(iter([DM, IOT])) == dict(
        zip(RULE_NAMES, TRUTH_TABLE[frozenset({DM, IOT})], strict=True)
    )


@pytest.mark.django_db
@pytest.mark.parametrize("roles", list(TRUTH_TABLE), ids=[_label(r) for r in TRUTH_TABLE])
def test_rules_on_a_real_membership(roles):
    membership = make_membership(make_user(), make_organization(), roles)
    assert permissions.capabilities(membership.roles) == dict(
        zip(RULE_NAMES, TRUTH_TABLE[roles], strict=True)
    )
