"""Replay protection: a time window plus a bounded memory of recent message ids."""

import threading
from collections import OrderedDict

from gateway.codes import REPLAY_WINDOW_S, ProtocolError, Reason

MAX_UNWINDOWED_IDS = 10_000  # status messages: a few per gateway connection


class ReplayGuard:
    """Refuses a message id seen before and a timestamp outside ``±window_s``.

    Ids are remembered until their timestamp leaves the window, at most ``max_ids`` of
    them. When traffic outgrows that bound the oldest ids are forgotten early, and the
    guard then refuses every windowed message not newer than the newest forgotten one:
    under overload it errs towards refusing late messages, never towards accepting a
    replay. Thread-safe; one guard per receiving process.
    """

    def __init__(self, window_s: float = REPLAY_WINDOW_S, max_ids: int = 200_000):
        if window_s <= 0 or max_ids < 1:
            raise ValueError("window_s and max_ids must be positive")
        self.window_ms = int(window_s * 1000)
        self.max_ids = max_ids
        self._seen: OrderedDict[str, int] = OrderedDict()  # id -> timestamp
        self._unwindowed: OrderedDict[str, int] = OrderedDict()  # id -> arrival
        self._floor_ms = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen) + len(self._unwindowed)

    def check(self, msg_id: str, ts_ms: int, now_ms: int, *, windowed: bool = True) -> None:
        """Record ``msg_id`` or raise ``ProtocolError(REPLAYED)``.

        ``windowed=False`` is for status messages, which are state assertions that may
        be old when they arrive (retained, or a last will signed at connect time); they
        are remembered from their arrival and still refused when they come twice. No
        message may be further ahead of ``now_ms`` than the window.
        """
        if ts_ms - now_ms > self.window_ms:
            # Never from the future, statuses included: the portal orders statuses by ts,
            # and one signed far ahead would shadow every later one.
            raise ProtocolError(Reason.REPLAYED, "timestamp ahead of the accepted window")
        if windowed and now_ms - ts_ms > self.window_ms:
            raise ProtocolError(Reason.REPLAYED, "timestamp outside the accepted window")
        with self._lock:
            if msg_id in self._seen or msg_id in self._unwindowed:
                raise ProtocolError(Reason.REPLAYED, "message id seen before")
            horizon = now_ms - self.window_ms
            if not windowed:
                self._unwindowed[msg_id] = now_ms
                _expire(self._unwindowed, horizon)
                while len(self._unwindowed) > MAX_UNWINDOWED_IDS:
                    self._unwindowed.popitem(last=False)
                return
            if ts_ms <= self._floor_ms:
                raise ProtocolError(Reason.REPLAYED, "older than the ids still remembered")
            self._seen[msg_id] = ts_ms
            _expire(self._seen, horizon)
            while len(self._seen) > self.max_ids:
                _, evicted_ts = self._seen.popitem(last=False)
                if evicted_ts > self._floor_ms:
                    self._floor_ms = evicted_ts


def _expire(seen: OrderedDict[str, int], horizon: int) -> None:
    """Arrival order is nearly time order: drop expired ids from the front."""
    while seen and seen[next(iter(seen))] < horizon:
        seen.popitem(last=False)
