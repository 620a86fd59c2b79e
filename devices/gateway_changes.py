"""What follows a change to a gateway's identity — added, secret rotated, deleted.

* Every running bridge forgets that gateway at once: the change is published on a Redis
  channel after the transaction commits, and each bridge's ``Subscriber`` drops the
  gateway from its cache (``GatewayDirectory``), so the next message is checked against
  the database. A rotated secret stops working within milliseconds, not after the
  cache's lifetime. Redis pub/sub delivers at most once, so the directory also expires
  on its own (a short TTL) and reloads whole whenever the subscription is (re)made.
* When ``FLEETGATE_BROKER_CONFIG_DIR`` is set, the broker's password and ACL files are
  written again and Mosquitto is told to reread them (``devices.broker``).

Wired to the model's signals in ``DevicesConfig.ready``; ``.update()`` calls on gateways
(online state, last seen) send none, and need none.
"""

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import redis
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

CHANNEL = "fleetgate:gateways:changed"
IDENTITY_FIELDS = {"uid", "secret", "organization", "broker_password_hash"}


def changed(uid: str) -> None:
    """Announce (after commit) that ``uid``'s secret, password or existence changed."""
    changed_many([uid])


def changed_many(uids: list[str]) -> None:
    transaction.on_commit(lambda: _announce(uids), robust=True)


def _announce(uids: list[str]) -> None:
    try:
        conn = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        with conn.pipeline(transaction=False) as pipe:
            for uid in uids:
                pipe.publish(CHANNEL, uid)
            pipe.execute()
    except redis.RedisError as exc:  # the bridges' cache expires on its own
        log.warning("Could not tell the bridges that gateways %s changed: %s", uids[:5], exc)
    out_dir = settings.BROKER_CONFIG_DIR
    if out_dir:
        from devices import broker

        try:
            written = broker.write(Path(out_dir))
            if written.changed:
                broker.reload(Path(out_dir))
        except (OSError, ValueError) as exc:
            log.error("Could not write the broker's accounts in %s: %s", out_dir, exc)


def on_save(sender, instance, created=False, update_fields=None, **kwargs) -> None:
    if created or update_fields is None or IDENTITY_FIELDS & set(update_fields):
        changed(instance.uid)


def on_delete(sender, instance, **kwargs) -> None:
    changed(instance.uid)


class Subscriber:
    """A thread that calls ``on_change(uid)`` for every announced change, and
    ``on_resubscribe()`` each time it (re)subscribes (anything may have been missed)."""

    def __init__(
        self,
        on_change: Callable[[str], None],
        on_resubscribe: Callable[[], None],
        url: str | None = None,
    ):
        self.on_change, self.on_resubscribe = on_change, on_resubscribe
        self.url = url or settings.REDIS_URL
        self.subscribed = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-changes", daemon=True)

    def start(self) -> "Subscriber":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            pubsub = None
            try:
                conn = redis.Redis.from_url(self.url, socket_timeout=5, health_check_interval=10)
                pubsub = conn.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                self.on_resubscribe()
                self.subscribed.set()
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message["type"] == "message":
                        self.on_change(message["data"].decode(errors="replace"))
            except redis.RedisError as exc:
                self.subscribed.clear()
                log.warning("Gateway changes: Redis unavailable (%s); retrying", exc)
                self._stopping.wait(1.0)
            except Exception:  # a bug in a callback must not end the thread
                log.exception("Gateway changes: handling a change failed")
                self._stopping.wait(1.0)
            finally:
                if pubsub is not None:
                    pubsub.close()
