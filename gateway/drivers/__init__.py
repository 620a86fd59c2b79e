"""Device drivers: how a gateway reaches its devices on the local link.

A driver turns one operation into work on the link and answers with the device's
info, or raises ``DriverError`` with a result code. The agent owns everything around
it: idempotency, concurrency, timeouts, image downloads, batching and delivery.
"""

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from gateway.codes import LinkState, OpKind, ResultCode
from gateway.store import Store

EventSink = Callable[[dict, str, dict], None]  # (device ref, event kind, data)
Progress = Callable[[int, int], None]  # (bytes done, total bytes)


class DriverError(Exception):
    def __init__(self, code: ResultCode, reason: str, device: dict | None = None):
        self.code, self.reason, self.device = ResultCode(code), reason, device
        super().__init__(f"{self.code.value}: {reason}")


@dataclass
class OpContext:
    """What the agent hands a driver beside the operation itself."""

    gateway_uid: str
    progress: Progress
    image: Path | None = None  # load_image: the downloaded, verified image


def parse_options(raw: dict[str, Any], spec: dict[str, tuple[type, Any]]) -> dict[str, Any]:
    """Typed driver options from a config table; INI gives strings, so convert them."""
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise ValueError(f"unknown driver options: {', '.join(unknown)}")
    out = {}
    for name, (kind, default) in spec.items():
        value = raw.get(name, default)
        try:
            if kind is bool and isinstance(value, str):
                value = value.strip().lower() in ("1", "true", "yes", "on")
            elif value is not None:
                value = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"driver option {name}: expected {kind.__name__}") from None
        out[name] = value
    return out


class Driver(ABC):
    name: ClassVar[str]
    kinds: ClassVar[frozenset[OpKind]]  # the operation kinds this driver can do

    def __init__(self, gateway_uid: str, options: dict[str, Any], store: Store):
        self.gateway_uid = gateway_uid
        self.store = store
        self.link_state = LinkState.OK
        self.link_detail = ""

    async def start(self, emit_event: EventSink) -> None:  # noqa: B027 - optional hook
        """Begin background work (events, scanning); called once before any operation."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """End background work."""

    def checkpoint(self) -> None:  # noqa: B027 - optional hook
        """Write buffered device state; runs inside the store transaction of a result batch."""

    @abstractmethod
    def device_count(self) -> int: ...

    @abstractmethod
    async def discover(self) -> list[dict]:
        """The devices on the link now, as protocol device-info objects."""

    @abstractmethod
    async def execute(self, op: dict, ctx: OpContext) -> dict:
        """Do one operation; return the device info or raise ``DriverError``."""


DRIVERS = {
    "simulated": "gateway.drivers.simulated:SimulatedDriver",
    "ble": "gateway.drivers.ble:BleDriver",
}


def make_driver(name: str, gateway_uid: str, options: dict[str, Any], store: Store) -> Driver:
    """Import a driver only when chosen, so a simulated gateway never loads bleak."""
    try:
        module, cls = DRIVERS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown driver {name!r}; choose one of {sorted(DRIVERS)}") from None
    return getattr(importlib.import_module(module), cls)(gateway_uid, options, store)
