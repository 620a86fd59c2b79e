"""Who a gateway is, for the bridge's hot path: uid → id, organization and secret.

A small cache in front of the ``Gateway`` table: every message is authenticated with its
gateway's secret, so looking it up must cost nothing, yet a rotated secret or a deleted
gateway must stop working at once (``devices.gateway_changes`` tells the directory).
"""

import threading
import time
from dataclasses import dataclass

from devices.models import Gateway


@dataclass(frozen=True, slots=True)
class GatewayRef:
    id: int
    uid: str
    organization_id: int
    secret: str


class GatewayDirectory:
    """Gateway uid → id, organization and secret, cached for the bridge's hot path.

    A changed gateway (secret rotated, deleted, added) is forgotten at once when the
    bridge hears of it (``devices.gateway_changes``); as the fallback for a missed
    notice the whole directory is reloaded every ``ttl`` seconds. A single unknown uid
    is looked up at most once per ``miss_ttl`` seconds, so a flood from an unknown
    gateway cannot turn into a flood of queries.
    """

    def __init__(self, ttl: float = 10.0, miss_ttl: float = 5.0):
        self.ttl, self.miss_ttl = ttl, miss_ttl
        self._by_uid: dict[str, GatewayRef] = {}
        self._loaded_at = 0.0
        self._misses: dict[str, float] = {}
        self._lock = threading.Lock()

    def _row(self, gateway) -> GatewayRef:
        return GatewayRef(gateway.id, gateway.uid, gateway.organization_id, gateway.secret or "")

    def refresh(self) -> None:
        gateways = Gateway.objects.only("id", "uid", "organization_id", "secret")
        by_uid = {g.uid: self._row(g) for g in gateways}
        with self._lock:
            self._by_uid, self._loaded_at, self._misses = by_uid, time.monotonic(), {}

    def get(self, uid: str) -> GatewayRef | None:
        now = time.monotonic()
        if now - self._loaded_at > self.ttl:
            self.refresh()
        ref = self._by_uid.get(uid)
        if ref is None and now - self._misses.get(uid, -self.miss_ttl) >= self.miss_ttl:
            gateway = Gateway.objects.only("id", "uid", "organization_id", "secret")
            gateway = gateway.filter(uid=uid).first()
            with self._lock:
                if gateway is None:
                    self._misses[uid] = now
                else:
                    ref = self._by_uid[uid] = self._row(gateway)
        return ref

    def secret(self, uid: str) -> str | None:
        """The ``SecretLookup`` that ``gateway.protocol.decode`` asks."""
        ref = self.get(uid)
        return ref.secret if ref and ref.secret else None

    def forget(self, uid: str) -> None:
        """Look ``uid`` up in the database next time (its secret or existence changed)."""
        with self._lock:
            self._by_uid.pop(uid, None)
            self._misses.pop(uid, None)

    def expire(self) -> None:
        """Reload everything at the next lookup (changes may have been missed)."""
        with self._lock:
            self._loaded_at = 0.0
