"""The broker URL: one parser, the same answer for every process (no Django here)."""

import paho.mqtt.client as mqtt
import pytest

from gateway.brokerurl import BrokerURL, BrokerURLError, from_environment, parse_broker_url
from gateway.config import AgentConfig, ConfigError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", BrokerURL("mqtt", "127.0.0.1", 1883)),
        ("mqtt://broker", BrokerURL("mqtt", "broker", 1883)),
        ("tcp://broker:1884", BrokerURL("mqtt", "broker", 1884)),
        ("mqtts://broker.example", BrokerURL("mqtts", "broker.example", 8883)),
        ("ssl://broker.example:9883", BrokerURL("mqtts", "broker.example", 9883)),
        ("MQTTS://[::1]", BrokerURL("mqtts", "::1", 8883)),
        (
            "mqtt://fleetgate-portal:p%40ss%3Aword@127.0.0.1:1884",
            BrokerURL("mqtt", "127.0.0.1", 1884, "fleetgate-portal", "p@ss:word"),
        ),
        (
            "mqtts://u:p@h:8884?ca=/etc/ca.pem&cert=/c.pem&key=/k.pem",
            BrokerURL("mqtts", "h", 8884, "u", "p", "/etc/ca.pem", "/c.pem", "/k.pem"),
        ),
    ],
)
def test_parse(url, expected):
    assert parse_broker_url(url, env={}) == expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://broker", "must start with mqtt:// or mqtts://"),
        ("mqtt://", "names no host"),
        ("mqtt://broker:99999", "bad port"),
        ("mqtt://broker/path", "has a path"),
        ("mqtt://broker?ca=/x.pem", "need mqtts://"),
        ("mqtts://broker?verify=no", "unknown broker URL option"),
        ("mqtts://broker?key=/k.pem", "needs its certificate"),
    ],
)
def test_refused(url, says):
    with pytest.raises(BrokerURLError, match=says):
        parse_broker_url(url, env={})


def test_tls_files_come_from_the_environment_unless_the_url_names_them():
    env = {"MQTT_CA_FILE": "/env/ca.pem", "MQTT_CERT_FILE": "/env/c.pem"}
    assert parse_broker_url("mqtts://h", env).ca_file == "/env/ca.pem"
    assert parse_broker_url("mqtts://h?ca=/url/ca.pem", env).ca_file == "/url/ca.pem"
    assert parse_broker_url("mqtt://h", env).ca_file is None  # plain MQTT: no TLS at all
    assert from_environment({"MQTT_URL": "mqtts://x", **env}).cert_file == "/env/c.pem"
    assert from_environment({}) == BrokerURL("mqtt", "127.0.0.1", 1883)


def test_the_password_is_never_shown():
    url = parse_broker_url("mqtt://portal:hunter2@h:1884", env={})
    assert "hunter2" not in repr(url) and "hunter2" not in str(url)
    assert url.without_login() == "mqtt://h:1884"
    with pytest.raises(BrokerURLError) as caught:
        parse_broker_url("ftp://portal:hunter2@h", env={})
    assert "hunter2" not in str(caught.value)


def test_without_login_keeps_tls_files_only_when_asked():
    url = parse_broker_url("mqtts://u:p@[::1]:8884?ca=/ca.pem", env={})
    assert url.without_login() == "mqtts://[::1]:8884"
    assert url.without_login(tls_files=True) == "mqtts://[::1]:8884?ca=%2Fca.pem"
    assert parse_broker_url(url.without_login(tls_files=True), env={}).ca_file == "/ca.pem"


def test_configure_gives_paho_the_login_and_tls(tmp_path):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    parse_broker_url("mqtts://portal:pw@localhost", env={}).configure(client)
    assert client._username == b"portal" and client._password == b"pw"
    assert client._ssl_context is not None  # verified against the system's CAs
    plain = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    parse_broker_url("mqtt://localhost", env={}).configure(plain, username="gw-1", password="x")
    assert plain._username == b"gw-1" and plain._ssl_context is None


def test_the_agent_config_uses_the_same_parser():
    common = {"gateway_uid": "gw-1", "secret": "s" * 20, "state_dir": "/tmp/x"}
    config = AgentConfig(**common, broker_url="ssl://broker.example")
    assert (config.broker.scheme, config.broker.port) == ("mqtts", 8883)
    with pytest.raises(ConfigError, match="broker_password"):
        AgentConfig(**common, broker_url="mqtt://gw-1:secret@broker")
