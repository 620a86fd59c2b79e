"""The header's links to every area of the portal, registered by the apps that own them.

Like the widgets, the portal imports no feature app: each app registers its links in
``AppConfig.ready`` (next to its widgets). A link whose URL name does not resolve is
left out, so a link may be registered before its page exists. A link the user's role
groups do not open is still shown, disabled, with the reason from
``portal.permissions`` — the user learns the area exists and what it needs.
"""

from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse

from portal import permissions


@dataclass(frozen=True)
class NavItem:
    key: str
    label: str
    url_name: str
    order: int = 100
    rule: str = "view"


_registry: dict[str, NavItem] = {}


def register(item: NavItem) -> NavItem:
    _registry[item.key] = item
    return item


def links(roles, path: str) -> list[dict]:
    """The header's links for a user with ``roles``, the current one marked."""
    result = []
    for item in sorted(_registry.values(), key=lambda i: (i.order, i.key)):
        try:
            url = reverse(item.url_name)
        except NoReverseMatch:
            continue
        decision = permissions.decide(item.rule, roles)
        result.append(
            {
                "key": item.key,
                "label": item.label,
                "url": url,
                "allowed": decision.allowed,
                "reason": decision.reason,
                "current": False,
            }
        )
    # The longest URL the path starts with is the current area: /devices/operations/
    # is Operations, not Devices; the dashboard only at "/" itself.
    matching = [
        link
        for link in result
        if path == link["url"] or link["url"] != "/" and path.startswith(link["url"])
    ]
    if matching:
        max(matching, key=lambda link: len(link["url"]))["current"] = True
    return result


register(NavItem("dashboard", "Dashboard", "dashboard", order=0))
register(NavItem("members", "Members", "members", order=80, rule="manage_members"))
register(NavItem("audit", "Audit log", "audit:log", order=85, rule="view_audit"))
register(NavItem("api", "API docs", "api:docs", order=90))
