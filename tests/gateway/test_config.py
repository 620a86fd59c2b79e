"""Config files: the same keys in JSON, TOML and INI; typos refused."""

import json

import pytest

from gateway.config import ConfigError, load_config

SECRET = "s" * 20


def test_json(tmp_path):
    path = tmp_path / "gw.json"
    data = {"gateway_uid": "gw-1", "secret": SECRET, "state_dir": "st", "concurrency": 4}
    path.write_text(json.dumps({**data, "driver_options": {"devices": 3}}))
    cfg = load_config(path)
    assert cfg.gateway_uid == "gw-1" and cfg.concurrency == 4
    assert cfg.state_dir == tmp_path / "st"  # relative to the file
    assert cfg.driver_options == {"devices": 3}
    assert (cfg.broker.host, cfg.broker_port) == ("127.0.0.1", 1883)


def test_toml(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text(
        f'gateway_uid = "gw-2"\nsecret = "{SECRET}"\nstate_dir = "/var/lib/fg"\n'
        'broker_url = "mqtts://broker.example"\ndriver = "ble"\n'
        '[driver_options]\nadapter = "hci1"\n'
    )
    cfg = load_config(path)
    assert cfg.broker_port == 8883 and cfg.driver == "ble"
    assert cfg.driver_options == {"adapter": "hci1"}


def test_ini(tmp_path):
    path = tmp_path / "gw.ini"
    path.write_text(
        f"[gateway]\ngateway_uid = gw-3\nsecret = {SECRET}\nstate_dir = /tmp/x\n"
        "batch_window_ms = 50\ncommand_max_age_s = 60.5\n[driver_options]\nlatency_ms = 5\n"
    )
    cfg = load_config(path)
    assert cfg.batch_window_ms == 50 and cfg.command_max_age_s == 60.5
    assert cfg.driver_options == {"latency_ms": "5"}  # the driver types its own options


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"gateway_uid": "gw", "secret": "%s", "state_dir": "x", "concurency": 3}',
            "unknown keys",
        ),
        ('{"gateway_uid": "gw", "state_dir": "x"}', "missing keys"),
        ('{"gateway_uid": "bad uid", "secret": "%s", "state_dir": "x"}', "gateway_uid"),
        ('{"gateway_uid": "gw", "secret": "short", "state_dir": "x"}', "secret"),
        (
            '{"gateway_uid": "gw", "secret": "%s", "state_dir": "x", "broker_url": "http://x"}',
            "broker_url",
        ),
        (
            '{"gateway_uid": "gw", "secret": "%s", "state_dir": "x", "concurrency": "many"}',
            "number",
        ),
        ("[1]", "expected an object"),
        ("{", "gw.json"),
    ],
)
def test_bad_configs(tmp_path, text, message):
    path = tmp_path / "gw.json"
    path.write_text(text.replace("%s", SECRET))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.json")
