"""Template helpers shared by every app's templates (``{% load fleetgate %}``)."""

from datetime import datetime
from urllib.parse import urlencode

from django import template
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()

MINUTE, HOUR, DAY = 60, 3600, 86400


def relative(moment: datetime, now: datetime | None = None) -> str:
    """The words static/js/time.js keeps fresh: "12 s ago", "in 5 min", or the date."""
    seconds = round(((now or timezone.now()) - moment).total_seconds())
    s = abs(seconds)
    if s < 5:
        return "just now"
    if s < MINUTE:
        words = f"{s} s"
    elif s < HOUR:
        words = f"{s // MINUTE} min"
    elif s < DAY:
        words = f"{s // HOUR} h"
    elif s < 30 * DAY:
        days = s // DAY
        words = f"{days} day" if days == 1 else f"{days} days"
    else:
        return f"{moment.astimezone(timezone.UTC):%Y-%m-%d}"
    return f"in {words}" if seconds < 0 else f"{words} ago"


@register.simple_tag
def ago(moment, empty="never"):
    """``<time>`` reading "12 s ago", the exact time on hover; ``empty`` for no time."""
    if not moment:
        return format_html('<span class="muted">{}</span>', empty)
    exact = moment.astimezone(timezone.UTC)
    return format_html(
        '<time datetime="{}" data-relative title="{}">{}</time>',
        exact.isoformat(timespec="seconds").replace("+00:00", "Z"),
        f"{exact:%Y-%m-%d %H:%M:%S} UTC",
        relative(moment),
    )


@register.inclusion_tag("portal/_action.html", takes_context=True)
def action(
    context,
    rule,
    label,
    url="",
    *,
    refused="",
    menuitem=False,
    css="",
    target="#modal-root",
    danger=False,
    element_id="",
    include="",
    **params,
):
    """A button that opens ``url`` in the dialog — or, when the user's role groups
    (``rule``, via ``portal.permissions``) or the object's state (``refused``, e.g.
    ``lifecycle.reason_forbidden``) do not allow it, the same button disabled with the
    reason: the user sees what exists and what it would take, never a silent gap.
    Other keyword arguments become the URL's query (``device=device.pk``).
    """
    reason = context.get("why", {}).get(rule, "") or refused
    if params:
        url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
    return {
        "label": label,
        "url": url,
        "reason": reason,
        "menuitem": menuitem,
        "css": css,
        "target": target,
        "danger": danger,
        "element_id": element_id,
        "include": include,
    }
