"""The agent's configuration file: JSON, TOML or INI, the same keys in each.

Unknown keys are refused, so a typo in a config file fails at start-up instead of
silently running with a default.
"""

import configparser
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gateway.brokerurl import BrokerURL, BrokerURLError, parse_broker_url
from gateway.schema import UID_RE


class ConfigError(ValueError):
    pass


@dataclass
class AgentConfig:
    gateway_uid: str
    secret: str
    state_dir: Path
    broker_url: str = "mqtt://127.0.0.1:1883"
    broker_password: str | None = None
    driver: str = "simulated"
    driver_options: dict[str, Any] = field(default_factory=dict)
    concurrency: int = 16  # operations at once on the local link
    batch_window_ms: int = 20  # how long results, events and progress are collected
    max_inflight: int = 100  # unacknowledged messages handed to the MQTT client
    command_max_age_s: float = 900  # older commands (queued by the broker) are refused
    op_timeout_s: float = 120
    image_timeout_s: float = 3600
    keepalive_s: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30
    result_retention_days: float = 7

    def __post_init__(self):
        self.state_dir = Path(self.state_dir)
        if not isinstance(self.gateway_uid, str) or not UID_RE.fullmatch(self.gateway_uid):
            raise ConfigError("gateway_uid: letters, digits, '-' and '_' only (1..64)")
        if not isinstance(self.secret, str) or len(self.secret) < 16:
            raise ConfigError("secret: at least 16 characters (the portal shows it once)")
        try:
            broker = self.broker
        except BrokerURLError as e:
            raise ConfigError(f"broker_url: {e}") from None
        if broker.username or broker.password is not None:
            raise ConfigError(
                "broker_url: no login in the URL; the user name is the gateway uid and the "
                "password goes in broker_password"
            )
        if not isinstance(self.driver_options, dict):
            raise ConfigError("driver_options: expected a table/object")
        for name in ("concurrency", "batch_window_ms", "max_inflight", "keepalive_s"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}: must be at least 1")

    @property
    def broker(self) -> BrokerURL:
        """The parsed ``broker_url``: TLS files only from its query, never the environment
        (a config file says everything about the gateway it configures)."""
        return parse_broker_url(self.broker_url, env={})

    @property
    def broker_port(self) -> int:
        return self.broker.port


_FIELDS = {f.name: f for f in fields(AgentConfig)}
_NUMERIC = {name: f.type for name, f in _FIELDS.items() if f.type in (int, float, "int", "float")}


def from_dict(data: dict[str, Any]) -> AgentConfig:
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown keys: {', '.join(unknown)}")
    missing = [n for n in ("gateway_uid", "secret", "state_dir") if n not in data]
    if missing:
        raise ConfigError(f"missing keys: {', '.join(missing)}")
    values = dict(data)
    for name, kind in _NUMERIC.items():
        if name in values:
            try:
                values[name] = kind(values[name])
            except (TypeError, ValueError):
                raise ConfigError(f"{name}: expected a number") from None
    return AgentConfig(**values)


def _read_ini(text: str) -> dict[str, Any]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    if not parser.has_section("gateway"):
        raise ConfigError("INI config needs a [gateway] section")
    data: dict[str, Any] = dict(parser["gateway"])
    if parser.has_section("driver_options"):
        data["driver_options"] = dict(parser["driver_options"])
    return data


def load_config(path: str | Path) -> AgentConfig:
    """Read a config file; the format follows the suffix (.json, .toml, else INI)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = _read_ini(text)
    except (ValueError, configparser.Error) as e:
        raise ConfigError(f"{path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object of settings")
    if "state_dir" in data and not Path(data["state_dir"]).is_absolute():
        data["state_dir"] = str(path.parent / data["state_dir"])  # relative to the file
    return from_dict(data)
