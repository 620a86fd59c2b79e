"""Refusals that every entry point answers the same way.

A ``Conflict`` is a request the rules refuse as a whole, with nothing changed: over
the license's capacity, no device able to take the action. Services raise it; it is
turned into a response in exactly two places — ``portal.api.exception_handler`` (409
with ``detail``, ``code`` and the ``details()``) and ``portal.htmx.ConflictMixin`` (the
page or dialog again, saying why) — never at each call site.
"""


class Conflict(Exception):
    """Refused as a whole; nothing changed. ``str(error)`` is the sentence users see."""

    code = "conflict"  # for API clients: which rule refused

    def details(self) -> dict:
        """What an API client needs to act on the refusal (seats free, devices skipped)."""
        return {}
