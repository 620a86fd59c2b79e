"""The portal's side of the link, as small as a test needs: publish signed commands,
collect authenticated messages. Also a private Mosquitto for tests that restart one."""

import os
import pwd
import queue
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from gateway.protocol import (
    Message,
    MsgType,
    ProtocolError,
    ReplayGuard,
    decode,
    encode,
    seal_params,
    topic,
)

REPO = Path(__file__).resolve().parents[2]


class PortalDouble:
    def __init__(self, uid: str, secret: str, port: int = 1883, *, persistent: bool = False):
        self.uid, self.secret = uid, secret
        self.inbox: queue.Queue[Message] = queue.Queue()
        self.rejected: list[ProtocolError] = []
        self.guard = ReplayGuard()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"portal-{uid}",
            clean_session=not persistent,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.subscribe(f"fleetgate/v1/gw/{self.uid}/+", qos=1)

    def _on_message(self, client, userdata, message):
        if message.topic.endswith("/cmd"):
            return  # our own commands
        try:
            self.inbox.put(
                decode(message.topic, message.payload, {self.uid: self.secret}.get, self.guard)
            )
        except ProtocolError as e:
            self.rejected.append(e)

    def command(self, ops: list[dict], *, seal: bool = True) -> None:
        """Publish ``ops``, their secret parameters sealed as the portal does."""
        if seal:
            ops = [seal_params(op, self.uid, self.secret) for op in ops]
        msg = Message(MsgType.COMMAND, self.uid, {"ops": ops})
        self.client.publish(topic(self.uid, MsgType.COMMAND), encode(msg, self.secret), qos=1)

    def wait_for(self, predicate, timeout: float = 20) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no such message arrived")
            try:
                msg = self.inbox.get(timeout=remaining)
            except queue.Empty:
                continue
            if predicate(msg):
                return msg

    def results(self, op_ids: set[str], timeout: float = 30) -> dict[str, dict]:
        got: dict[str, dict] = {}
        deadline = time.monotonic() + timeout
        while not op_ids <= got.keys():
            msg = self.wait_for(lambda m: m.type is MsgType.RESULT, deadline - time.monotonic())
            for item in msg.items:
                got.setdefault(item["op"], item)  # QoS 1 may repeat; first one wins
        return got

    def clear_retained(self) -> None:
        """Leave no retained status behind on the shared broker."""
        self.client.publish(
            topic(self.uid, MsgType.STATUS), b"", qos=1, retain=True
        ).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_agent(config_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "--log-level",
            "WARNING",
            "run",
            "--config",
            str(config_path),
        ],
        cwd=REPO,
        env=env,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(port: int, workdir: Path) -> subprocess.Popen:
    """A private Mosquitto on loopback (TCP_NODELAY, persistence in ``workdir``) we may restart."""
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
        f"persistence true\npersistence_location {workdir}/\n"
        # As root, Mosquitto would switch to its own user and could not save to workdir.
        f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
    )
    broker = subprocess.Popen(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return broker
        except OSError:
            time.sleep(0.05)
    broker.kill()
    raise RuntimeError("private mosquitto did not start")
