"""The dashboard's widget registry.

The portal imports no feature app: each app registers its widgets in
``AppConfig.ready`` and the dashboard renders whatever is registered, in order.

A widget is ``wide`` (the whole row) unless it says it reads well in half the row:
at 1024 px a half is about 470 px, too narrow for a table of five columns, so a new
widget is wide until someone has looked at it in half a row.
"""

from dataclasses import dataclass

from portal import permissions

WIDE = "wide"
HALF = "half"


@dataclass(frozen=True)
class Widget:
    key: str  # stable id, used in the saved layout and as the DOM id
    title: str
    url_name: str  # the view that renders the widget's body (an htmx partial)
    order: int = 100
    rule: str = "view"  # the permissions rule a user needs to see it
    size: str = WIDE  # WIDE or HALF (two columns from 900 px on; one below)


_registry: dict[str, Widget] = {}


def register(widget: Widget) -> Widget:
    if widget.size not in (WIDE, HALF):
        raise ValueError(f"Widget {widget.key}: size must be {WIDE!r} or {HALF!r}.")
    _registry[widget.key] = widget
    return widget


def visible_widgets(roles) -> list[Widget]:
    widgets = [w for w in _registry.values() if permissions.allows(w.rule, roles)]
    return sorted(widgets, key=lambda w: (w.order, w.key))


def arrange(widgets: list[Widget], saved: dict) -> list[dict]:
    """The user's saved order and collapsed cards applied to the widgets they may see.

    Widgets the saved layout does not know (new ones) come after the known ones, in
    their registered order. A half widget with no half neighbour to share its row
    takes the whole row (``stretched``): the grid flows in reading order, never
    ``dense``, so what the user sees is the order they chose and the order keyboard
    focus follows. static/js/dashboard.js applies the same rule after a move.
    """
    position = {key: i for i, key in enumerate(saved.get("order", []))}
    ordered = sorted(widgets, key=lambda w: (position.get(w.key, len(position) + w.order), w.key))
    collapsed = set(saved.get("collapsed", []))
    cards = [{"widget": w, "collapsed": w.key in collapsed, "stretched": False} for w in ordered]
    i = 0
    while i < len(cards):
        if cards[i]["widget"].size == HALF:
            partner = i + 1 < len(cards) and cards[i + 1]["widget"].size == HALF
            if partner:
                i += 2
                continue
            cards[i]["stretched"] = True
        i += 1
    return cards
