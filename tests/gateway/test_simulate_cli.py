"""``python -m gateway simulate`` finds the broker where every other process does:
``--broker``, else ``MQTT_URL``; each simulated gateway logs in as itself."""

import json
import os
import queue
import subprocess
import sys
import uuid

import paho.mqtt.client as mqtt
import pytest

from tests.gateway.portal_double import REPO, free_port, start_broker

pytestmark = pytest.mark.services


def _listen(port: int) -> tuple[mqtt.Client, queue.Queue]:
    seen: queue.Queue = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"listen-{uuid.uuid4().hex}")
    client.on_connect = lambda c, *a: c.subscribe("fleetgate/v1/gw/+/status", qos=1)
    client.on_message = lambda c, u, m: seen.put(m.topic)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client, seen


def _simulate(tmp_path, prefix: str, *extra: str, mqtt_url: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MQTT_URL": mqtt_url}
    run = subprocess.run(
        [sys.executable, "-m", "gateway", "--log-level", "WARNING", "simulate"]
        + ["--secret-seed", "cli", "--prefix", prefix, "--gateways", "1", "--devices", "2"]
        + ["--duration", "0.5", "--state-dir", str(tmp_path / prefix), *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.splitlines()[0])


@pytest.mark.parametrize("via", ["MQTT_URL", "--broker"])
def test_simulate_connects_to_the_broker_it_is_given(tmp_path, via):
    port = free_port()
    broker = start_broker(port, tmp_path)
    listener, seen = _listen(port)
    prefix = f"cli-{uuid.uuid4().hex[:8]}-"
    url = f"mqtt://fleetgate-portal:not-for-gateways@127.0.0.1:{port}"
    try:
        if via == "MQTT_URL":
            ready = _simulate(tmp_path, prefix, mqtt_url=url)
        else:
            ready = _simulate(tmp_path, prefix, "--broker", url, mqtt_url="mqtt://127.0.0.1:1")
        assert ready["connected"] == 1
        assert seen.get(timeout=10) == f"fleetgate/v1/gw/{prefix}001/status"
    finally:
        listener.disconnect()
        listener.loop_stop()
        broker.terminate()
        broker.wait(10)
