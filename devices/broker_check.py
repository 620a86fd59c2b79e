"""What an MQTT broker offers of what the gateway link needs, found out by trying.

docs/deploy.md lists what Fleetgate needs of a broker and which brokers have it; this
is the same list as probes, for the broker a deployment actually runs (``manage.py
broker_check``). Each probe uses its own short-lived clients with MQTT_URL's login
under a scratch gateway uid (``fleetgate/v1/gw/probe-<random>/…``), so the broker's ACL
for the portal's user applies; running bridges see the probes and refuse them as from
an unknown gateway, which is harmless.
"""

import threading
import time
import uuid
from dataclasses import dataclass

from devices.mqtt import make_client
from gateway.protocol import TOPIC_ROOT


@dataclass
class Capability:
    key: str
    needed_for: str
    required: bool  # without it the link is wrong, not merely smaller


CAPABILITIES = [
    Capability("qos1", "commands, results and events are never lost (QoS 1)", True),
    Capability("persistent_session", "what arrives while a bridge or gateway is away waits", True),
    Capability("retained", "a gateway's last status is there for a newcomer", True),
    Capability("last_will", "a gateway that dies is marked offline", True),
    Capability(
        "shared_subscription",
        "several bridges split the load ($share/); without it run exactly one bridge",
        False,
    ),
    Capability(
        "retained_wildcard",
        "a brand-new bridge session learns every gateway's status at once; without it "
        "statuses come with each gateway's next message",
        False,
    ),
]


class _Probe:
    """One client that records what it receives."""

    def __init__(self, url, *, clean=True, client_id=None, will=None):
        self.messages: list = []
        self.session_present = None
        self.ready = threading.Event()
        self.client = make_client(
            client_id or f"fleetgate-probe-{uuid.uuid4().hex[:12]}", clean_session=clean, url=url
        )
        if will:
            self.client.will_set(*will)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.append(m)
        self.client.loop_start()
        if not self.ready.wait(10):
            self.close()
            raise ConnectionError("the broker did not accept the connection")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            self.session_present = flags.session_present
            self.ready.set()

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe(topic, qos=1)
        done.wait(5)

    def publish(self, topic: str, payload: bytes, retain=False) -> bool:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        return info.is_published()

    def payloads(self, wait: float = 1.5, count: int = 1) -> list[bytes]:
        deadline = time.monotonic() + wait
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return [m.payload for m in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def check(url: str | None = None) -> dict[str, bool]:
    """Every capability of ``CAPABILITIES`` with whether the broker at ``url`` has it."""
    root = f"{TOPIC_ROOT}/probe-{uuid.uuid4().hex[:12]}"
    found = {}
    probes = {
        "qos1": _qos1,
        "persistent_session": _persistent_session,
        "retained": _retained,
        "last_will": _last_will,
        "shared_subscription": _shared_subscription,
        "retained_wildcard": _retained_wildcard,
    }
    try:
        _Probe(url).close()
    except ConnectionError:  # no broker, or it refuses the login: nothing to probe
        return dict.fromkeys(probes, False)
    for key, probe in probes.items():
        try:
            found[key] = probe(url, f"{root}-{key}")
        except ConnectionError:
            found[key] = False
    return found


def _qos1(url, root):
    sub = _Probe(url)
    pub = _Probe(url)
    try:
        sub.subscribe(f"{root}/evt")
        acked = pub.publish(f"{root}/evt", b"qos1")
        sub.payloads()
        return acked and any(m.qos == 1 and m.payload == b"qos1" for m in sub.messages)
    finally:
        sub.close()
        pub.close()


def _persistent_session(url, root):
    client_id = f"fleetgate-probe-{uuid.uuid4().hex[:12]}"
    away = _Probe(url, clean=False, client_id=client_id)
    away.subscribe(f"{root}/evt")
    away.close()
    pub = _Probe(url)
    back = None
    try:
        pub.publish(f"{root}/evt", b"while-away")
        back = _Probe(url, clean=False, client_id=client_id)
        return back.session_present and b"while-away" in back.payloads()
    finally:
        pub.close()
        if back:
            back.close()
        _Probe(url, clean=True, client_id=client_id).close()  # the broker forgets it


def _retained(url, root, subscribe_to=None):
    pub = _Probe(url)
    sub = None
    try:
        pub.publish(f"{root}/status", b"retained", retain=True)
        sub = _Probe(url)
        sub.subscribe(subscribe_to or f"{root}/status")
        return b"retained" in sub.payloads()
    finally:
        pub.publish(f"{root}/status", b"", retain=True)  # clears it
        pub.close()
        if sub:
            sub.close()


def _retained_wildcard(url, root):
    return _retained(url, root, subscribe_to=f"{root}/+")


def _last_will(url, root):
    watcher = _Probe(url)
    try:
        watcher.subscribe(f"{root}/status")
        dying = _Probe(url, will=(f"{root}/status", b"gone", 1, False))
        sock = dying.client.socket()
        dying.client.loop_stop()  # no DISCONNECT: the connection just dies
        sock.close()
        return b"gone" in watcher.payloads(wait=5)
    finally:
        watcher.close()


def _shared_subscription(url, root):
    group = f"probe{uuid.uuid4().hex[:8]}"
    members = [_Probe(url), _Probe(url)]
    pub = _Probe(url)
    try:
        for member in members:
            member.subscribe(f"$share/{group}/{root}/+")
        sent = [f"m{i}".encode() for i in range(20)]
        for payload in sent:
            pub.publish(f"{root}/evt", payload)
        time.sleep(0.5)
        got = [p for member in members for p in member.payloads(wait=1, count=1)]
        # Each message to exactly one member of the group.
        return sorted(got) == sorted(sent)
    finally:
        for member in members:
            member.close()
        pub.close()
