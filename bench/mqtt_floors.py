"""MQTT floors: what one pair of paho clients reaches on the broker with no work behind it.

The benchmarks measure these in the same run as the load, so their figures can be read
against the ceiling the broker and the client library set on this machine.
"""

import threading
import time
import uuid

import paho.mqtt.client as mqtt
from django.core.management.base import CommandError

from devices.mqtt import broker_address, set_nodelay


def clean_client(url: str, client_id: str, inflight: int | None = None) -> mqtt.Client:
    """A paho client with a clean session and the broker URL's login (not yet connected)."""
    _, _, user, password = broker_address(url)
    c = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    if user:
        c.username_pw_set(user, password)
    if inflight:
        c.max_inflight_messages_set(inflight)
    return c


def _rate(send, slots, counter: list[int], seconds: float) -> float:
    """Call ``send`` whenever a slot is free for ``seconds`` (after 0.5 s of warm-up);
    ``counter[0]``, advanced by the receiving side, per second."""
    start = time.monotonic()
    warm_until, end = start + 0.5, start + 0.5 + seconds
    counted_from = None
    while (now := time.monotonic()) < end:
        if counted_from is None and now >= warm_until:
            counted_from = (now, counter[0])
        if slots.acquire(timeout=1):
            send()
    # A loaded broker can hold the first slots past the whole window: count from the start.
    t0, n0 = counted_from or (start, 0)
    return (counter[0] - n0) / (time.monotonic() - t0)


def mqtt_floor(url: str, seconds: float, payload_bytes: int = 512, inflight: int = 100) -> float:
    """Messages/s from one paho publisher to one paho subscriber, QoS 1 both legs."""
    host, port, _, _ = broker_address(url)
    tag = uuid.uuid4().hex[:12]
    topic = f"fleetgate-bench/floor/{tag}"
    received = [0]
    subscribed, connected = threading.Event(), threading.Event()

    def client(role):
        return clean_client(url, f"fleetgate-bench-floor-{role}-{tag}", inflight)

    sub, pub = client("sub"), client("pub")

    def sub_connected(c, userdata, flags, reason_code, properties):
        set_nodelay(c)
        c.subscribe(topic, qos=1)

    def on_message(c, userdata, message):
        received[0] += 1

    sub.on_connect = sub_connected
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = on_message
    slots = threading.BoundedSemaphore(inflight)
    pub.on_connect = lambda c, *a: (set_nodelay(c), connected.set())
    pub.on_publish = lambda *a: slots.release()
    try:
        for c in (sub, pub):
            c.connect(host, port)
            c.loop_start()
        if not (subscribed.wait(10) and connected.wait(10)):
            raise CommandError(f"The broker at {url} did not answer the floor measurement.")
        payload = b"x" * payload_bytes
        return _rate(lambda: pub.publish(topic, payload, qos=1), slots, received, seconds)
    finally:
        for c in (pub, sub):
            c.disconnect()
            c.loop_stop()


def mqtt_roundtrip_floor(url: str, seconds: float, payload_bytes: int = 512, inflight: int = 100):
    """Command → reply round trips/s between two paho clients, QoS 1 on all four legs.

    The requester publishes a command; the responder, subscribed, publishes a reply from
    its message callback; the requester counts replies. The ceiling a portal–gateway
    pair reaches with no work behind it: one message each way per round trip.
    """
    host, port, _, _ = broker_address(url)
    tag = uuid.uuid4().hex[:12]
    ask, answer = f"fleetgate-bench/rt/{tag}/cmd", f"fleetgate-bench/rt/{tag}/res"
    replies = [0]
    ready = threading.Barrier(3)
    slots = threading.BoundedSemaphore(inflight)

    def client(role, topic):
        c = clean_client(url, f"fleetgate-bench-rt-{role}-{tag}", inflight)
        c.on_connect = lambda c, *a: (set_nodelay(c), c.subscribe(topic, qos=1))
        c.on_subscribe = lambda *a: ready.wait(10)
        return c

    requester, responder = client("req", answer), client("resp", ask)
    responder.on_message = lambda c, u, m: c.publish(answer, m.payload, qos=1)

    def on_reply(c, userdata, message):
        replies[0] += 1
        slots.release()

    requester.on_message = on_reply
    try:
        for c in (requester, responder):
            c.connect(host, port)
            c.loop_start()
        try:
            ready.wait(10)
        except threading.BrokenBarrierError:
            raise CommandError(
                f"The broker at {url} did not answer the floor measurement."
            ) from None
        payload = b"x" * payload_bytes
        return _rate(lambda: requester.publish(ask, payload, qos=1), slots, replies, seconds)
    finally:
        for c in (requester, responder):
            c.disconnect()
            c.loop_stop()
