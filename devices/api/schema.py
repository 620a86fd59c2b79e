"""Limits and sentences of the devices API that its serializers and views share."""

from devices.forms import MAX_SELECTION

RECENT_OPERATIONS = 10
FAILED_SHOWN = 100  # in a bulk operation's detail; ``failures/`` pages through all of them
TOO_MANY = f"Give at most {MAX_SELECTION:,} devices at a time."
NO_SUCH_GROUP = "No such group in this organization."
