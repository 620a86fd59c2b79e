"""MQTT_URL means the same to every process: bridge, workers, reconciler, preflight,
benchmarks, the Gateways widget's config file and ``gateway simulate``.

They all parse it with ``gateway.brokerurl``; before, four parsers disagreed about
``mqtts://`` (the bridge and the workers refused it outright).
"""

from pathlib import Path

import pytest

from bench.mqtt_floors import clean_client
from devices import mqtt as portal_mqtt
from devices.agent_config import agent_broker_url
from devices.preflight import check_mqtt
from gateway.brokerurl import parse_broker_url
from gateway.simulate import build_configs

URLS = [
    "mqtts://broker.example",
    "ssl://broker.example:9883",
    "mqtt://fleetgate-portal:p%40ss@broker.example:1884",
    "tcp://broker.example",
    "mqtt://[::1]:1883",
]


@pytest.mark.parametrize("url", URLS)
def test_every_process_reads_mqtt_url_the_same_way(settings, url):
    settings.MQTT_URL = url
    expected = parse_broker_url(url)
    # The bridge, the workers' command publisher and the reconciler's dispatches.
    client = portal_mqtt.make_client("test-url")
    assert (client._host, client._port) == (expected.host, expected.port)
    assert (client._ssl_context is not None) is expected.tls
    assert client._username == (expected.username.encode() if expected.username else None)
    # The benchmarks' floor clients.
    floor = clean_client(url, "test-floor")
    assert (floor._ssl_context is not None) is expected.tls
    # What a new gateway's config file is told, and what `simulate` connects to.
    assert agent_broker_url() == expected.without_login()
    (config,) = build_configs(
        {"gw-1": {"secret": "s" * 20}},
        state_dir=Path("/tmp/unused"),
        broker_url=expected.without_login(tls_files=True),
        broker_password=None,
        driver_options={},
        concurrency=1,
    )
    assert (config.broker.host, config.broker.port, config.broker.tls) == (
        expected.host,
        expected.port,
        expected.tls,
    )


def test_preflight_refuses_what_the_parser_refuses(settings):
    status = check_mqtt("http://portal:hunter2@broker")
    assert not status.ok and "mqtt:// or mqtts://" in status.message
    assert "hunter2" not in status.message
