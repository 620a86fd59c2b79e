"""Rollout states and image-load phases, with their colours and groups."""

from django.db import models


class RolloutState(models.TextChoices):
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    CANCELLING = "cancelling", "Cancelling"
    FINISHED = "finished", "Finished"
    CANCELLED = "cancelled", "Cancelled"


# A device takes part in at most one active rollout; an image an active rollout loads
# cannot be deleted.
ACTIVE_ROLLOUT_STATES = frozenset(
    {RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.CANCELLING}
)
TERMINAL_ROLLOUT_STATES = frozenset({RolloutState.FINISHED, RolloutState.CANCELLED})

ROLLOUT_COLOURS = {
    RolloutState.RUNNING: "blue",
    RolloutState.PAUSED: "amber",
    RolloutState.CANCELLING: "amber",
    RolloutState.FINISHED: "green",
    RolloutState.CANCELLED: "grey",
}

# What may happen to a rollout, and the state it leads to: (state, action) → new state.
# "finish" ends a rollout whose every load is terminal: a running one is finished, a
# cancelling one cancelled — so "cancelling" never outlives its last running load.
ROLLOUT_TRANSITIONS = {
    (RolloutState.RUNNING, "pause"): RolloutState.PAUSED,
    (RolloutState.PAUSED, "resume"): RolloutState.RUNNING,
    (RolloutState.RUNNING, "cancel"): RolloutState.CANCELLING,
    (RolloutState.PAUSED, "cancel"): RolloutState.CANCELLING,
    (RolloutState.RUNNING, "finish"): RolloutState.FINISHED,
    (RolloutState.PAUSED, "finish"): RolloutState.FINISHED,
    (RolloutState.CANCELLING, "finish"): RolloutState.CANCELLED,
}


class LoadPhase(models.TextChoices):
    """Where one device's image load is. ``download`` and ``transfer`` are the protocol's
    progress phases (docs/gateway-protocol.md, ``progress``); a load whose result was ok
    is ``confirming`` until the device reports the new version (issue 12, point 4)."""

    WAITING = "waiting", "Waiting"
    DOWNLOAD = "download", "Downloading"
    TRANSFER = "transfer", "Transferring"
    CONFIRMING = "confirming", "Restarting"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


OPEN_LOAD_PHASES = frozenset(
    {LoadPhase.WAITING, LoadPhase.DOWNLOAD, LoadPhase.TRANSFER, LoadPhase.CONFIRMING}
)

LOAD_COLOURS = {
    LoadPhase.WAITING: "grey",
    LoadPhase.DOWNLOAD: "blue",
    LoadPhase.TRANSFER: "blue",
    LoadPhase.CONFIRMING: "amber",
    LoadPhase.DONE: "green",
    LoadPhase.FAILED: "red",
    LoadPhase.CANCELLED: "grey",
}
