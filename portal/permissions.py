"""Every role rule of the portal, in one place.

Views, the API, the admin and consumers ask these functions; none of them inspects
roles itself. Each rule takes the set of roles a user holds in one organization, so
a rule can never leak across organizations.

Each rule also says, in words, what it needs (``NEEDS``): a refused user sees a
disabled button or a 403 page with that reason ("needs Administrator, or Device
Manager and IoT Manager"), never an action that silently is not there. ``decide``
gives both the answer and the reason, so the two cannot drift apart.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from portal.choices import Role

Roles = frozenset[str]

ADMIN = Role.ADMINISTRATOR.value
DEVICE_MANAGER = Role.DEVICE_MANAGER.value
IOT_MANAGER = Role.IOT_MANAGER.value


def _roles(roles: Iterable[str]) -> Roles:
    return frozenset(roles)


def can_view(roles: Iterable[str]) -> bool:
    """Any member sees the organization's inventory, even with no role group."""
    return True


def can_enroll(roles: Iterable[str]) -> bool:
    """The field rule: Administrator, or both Device Manager and IoT Manager."""
    roles = _roles(roles)
    return ADMIN in roles or {DEVICE_MANAGER, IOT_MANAGER} <= roles


def can_run_device_actions(roles: Iterable[str]) -> bool:
    """Provision, deprovision, load images, replace, remove: device managers' work."""
    roles = _roles(roles)
    return ADMIN in roles or DEVICE_MANAGER in roles


def can_manage_groups(roles: Iterable[str]) -> bool:
    """Grouping devices is part of running device actions on them."""
    return can_run_device_actions(roles)


def can_manage_gateways(roles: Iterable[str]) -> bool:
    """Gateways are the IoT side of the house: IoT managers and administrators."""
    roles = _roles(roles)
    return ADMIN in roles or IOT_MANAGER in roles


def can_manage_members(roles: Iterable[str]) -> bool:
    return ADMIN in _roles(roles)


def can_manage_licenses(roles: Iterable[str]) -> bool:
    return ADMIN in _roles(roles)


def can_view_audit_log(roles: Iterable[str]) -> bool:
    """The audit log (and its export) is oversight of everyone's actions, the managers'
    included, and names every member: administrators only. Managers follow their own
    work in the Operations widget."""
    return ADMIN in _roles(roles)


RULES = {
    "view": can_view,
    "enroll": can_enroll,
    "device_actions": can_run_device_actions,
    "manage_groups": can_manage_groups,
    "manage_gateways": can_manage_gateways,
    "manage_members": can_manage_members,
    "manage_licenses": can_manage_licenses,
    "view_audit": can_view_audit_log,
}


# What each rule needs, in the words a refused user reads.
NEEDS = {
    "view": "membership of the organization",
    "enroll": "Administrator, or Device Manager and IoT Manager",
    "device_actions": "Administrator or Device Manager",
    "manage_groups": "Administrator or Device Manager",
    "manage_gateways": "Administrator or IoT Manager",
    "manage_members": "Administrator",
    "manage_licenses": "Administrator",
    "view_audit": "Administrator",
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # "" when allowed; else "needs …"

    def __bool__(self):
        return self.allowed


def decide(rule: str, roles: Iterable[str]) -> Decision:
    """A rule's answer and, when it refuses, why: "needs Administrator or Device Manager"."""
    if RULES[rule](roles):
        return Decision(True, "")
    return Decision(False, f"needs {NEEDS[rule]}")


def refusals(roles: Iterable[str]) -> dict[str, str]:
    """Every rule's reason for refusing ("" where it allows), for disabled buttons."""
    roles = _roles(roles)
    return {name: decide(name, roles).reason for name in RULES}


def allows(rule: str, roles: Iterable[str]) -> bool:
    """Look a rule up by name, for declarative views (``required_rule = "enroll"``)."""
    return RULES[rule](roles)


def capabilities(roles: Iterable[str]) -> dict[str, bool]:
    """Every rule's answer, for templates that show or hide buttons."""
    roles = _roles(roles)
    return {name: rule(roles) for name, rule in RULES.items()}
