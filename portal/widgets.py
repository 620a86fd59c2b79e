"""The dashboard's widget registry.

The portal imports no feature app: each app registers its widgets in
``AppConfig.ready`` and the dashboard renders whatever is registered, in order.
"""

from dataclasses import dataclass

from portal import permissions


@dataclass(frozen=True)
class Widget:
    key: str  # stable id, used in the saved layout and as the DOM id
    title: str
    url_name: str  # the view that renders the widget's body (an htmx partial)
    order: int = 100
    rule: str = "view"  # the permissions rule a user needs to see it


_registry: dict[str, Widget] = {}


def register(widget: Widget) -> Widget:
    _registry[widget.key] = widget
    return widget


def visible_widgets(roles) -> list[Widget]:
    widgets = [w for w in _registry.values() if permissions.allows(w.rule, roles)]
    return sorted(widgets, key=lambda w: (w.order, w.key))
