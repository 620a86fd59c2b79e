"""Every action on one device, for its row menu and its page, with the reason beside
each one the user's role groups or the device's state refuse."""

from urllib.parse import urlencode

from django import template
from django.template.loader import render_to_string
from django.urls import reverse

from devices import lifecycle

register = template.Library()


def _state_refusal(device, action) -> str:
    return (lifecycle.reason_forbidden(device.state, action) or "").rstrip(".")


@register.inclusion_tag("devices/_device_menu_items.html", takes_context=True)
def device_menu(context, device, actions, on_device_page=False, menuitem=True):
    """The items of a device's menu: (label, url, reason, danger). The role reason comes
    from ``portal.permissions`` (through the context's ``why``), the state reason from
    ``devices.lifecycle`` — a refused item is shown disabled with it, never hidden."""
    why = context.get("why", {})
    action_url = reverse("devices:action")
    items = []

    def add(rule, label, url, refused="", danger=False):
        items.append(
            {"label": label, "url": url, "reason": why.get(rule, "") or refused, "danger": danger}
        )

    for action, label in actions:
        query = urlencode({"action": action, "device": device.pk})
        add("device_actions", f"{label}…", f"{action_url}?{query}", _state_refusal(device, action))
    add("device_actions", "Edit name and location…", reverse("devices:edit", args=[device.pk]))
    add(
        "enroll",
        "Delete (unenroll)…",
        reverse("devices:delete", args=[device.pk]),
        _state_refusal(device, lifecycle.Action.DELETE),
        danger=True,
    )
    add_url = reverse("devices:group-add-devices")
    add("manage_groups", "Add to group…", f"{add_url}?{urlencode({'device': device.pk})}")
    remove_url = reverse("devices:group-remove-devices")
    for group in getattr(device, "group_list", ()):
        query = urlencode({"device": device.pk, "group": group.pk})
        add("manage_groups", f"Remove from {group.name}…", f"{remove_url}?{query}")
    return {
        "device": device,
        "items": items,
        "on_device_page": on_device_page,
        "menuitem": menuitem,
    }


@register.simple_tag(takes_context=True)
def render_panel(context, panel):
    """A ``devices.device_page.Panel``: its template with the page's context and its own."""
    return render_to_string(panel.template, {**context.flatten(), **panel.context})
