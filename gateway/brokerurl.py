"""The broker URL (``MQTT_URL``, ``--broker``, ``broker_url``): one parser for every process.

The bridge, the RQ workers, the reconciler, ``preflight``, the benchmarks, ``python -m
gateway simulate`` and the agent all read the broker's address through this module, so
they agree on what ``mqtts://`` means (TLS, port 8883, the broker's certificate checked
against the system's CAs or the one named), on default ports, and on the login.

A public module of the gateway package (no Django): the portal imports it from here.

Form: ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://…`` (``tcp://`` and
``ssl://`` are accepted as their aliases). TLS options, for ``mqtts`` only, come from the
query (``?ca=/path/ca.pem&cert=/path/client.pem&key=/path/client.key``) or, when the
query does not name them, from the environment: ``MQTT_CA_FILE``, ``MQTT_CERT_FILE``,
``MQTT_KEY_FILE``. The user name and password are percent-decoded.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

DEFAULT_URL = "mqtt://127.0.0.1:1883"
SCHEMES = {"mqtt": "mqtt", "tcp": "mqtt", "mqtts": "mqtts", "ssl": "mqtts"}
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
TLS_OPTIONS = {"ca": "MQTT_CA_FILE", "cert": "MQTT_CERT_FILE", "key": "MQTT_KEY_FILE"}


class BrokerURLError(ValueError):
    """The URL cannot be used; the message never contains the password."""


@dataclass(frozen=True, slots=True)
class BrokerURL:
    scheme: str  # "mqtt" or "mqtts"
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None  # mqtts: the CA that signed the broker's certificate
    cert_file: str | None = None  # mqtts: a client certificate, when the broker wants one
    key_file: str | None = None

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    @property
    def address(self) -> str:
        """``host:port`` for messages (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def without_login(self, *, tls_files: bool = False) -> str:
        """The URL without user and password (a gateway logs in as itself).

        ``tls_files`` keeps the CA and client certificate paths in the query: right for
        a process on this host (``simulate``), wrong for a config file shown to a
        gateway elsewhere.
        """
        url = f"{self.scheme}://{self.address}"
        if tls_files and self.tls:
            files = {"ca": self.ca_file, "cert": self.cert_file, "key": self.key_file}
            query = urlencode({k: v for k, v in files.items() if v})
            url = f"{url}?{query}" if query else url
        return url

    def __repr__(self) -> str:  # never the password
        login = ""
        if self.username:
            login = f"{self.username}:***@" if self.password else f"{self.username}@"
        return f"BrokerURL({self.scheme}://{login}{self.address})"

    __str__ = __repr__

    def configure(self, client, *, username: str | None = None, password: str | None = None):
        """Give a paho client this URL's login (or the one passed) and, for mqtts, TLS.

        TLS verifies the broker's certificate and host name, against ``ca_file`` or the
        system's CAs: there is no option to switch the check off.
        """
        user = username if username is not None else self.username
        secret = password if password is not None else self.password
        if user:
            client.username_pw_set(user, secret)
        if self.tls:
            client.tls_set(ca_certs=self.ca_file, certfile=self.cert_file, keyfile=self.key_file)
        return client


def parse_broker_url(url: str | None, env: Mapping[str, str] | None = None) -> BrokerURL:
    """Parse a broker URL; ``env`` (default ``os.environ``) supplies TLS files not in it."""
    env = os.environ if env is None else env
    url = (url or DEFAULT_URL).strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BrokerURLError("the broker URL has a bad port or address") from None
    scheme = SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise BrokerURLError(
            f"the broker URL must start with mqtt:// or mqtts://, not {parts.scheme or '?'}://"
        )
    if not parts.hostname:
        raise BrokerURLError("the broker URL names no host (mqtt://host:1883)")
    if parts.path not in ("", "/") or parts.fragment:
        raise BrokerURLError("the broker URL has a path; give only mqtt[s]://host[:port]")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise BrokerURLError("the broker URL's query is not name=value pairs") from None
    unknown = sorted(set(query) - set(TLS_OPTIONS))
    if unknown:
        raise BrokerURLError(
            f"unknown broker URL option(s) {unknown}; known: {sorted(TLS_OPTIONS)}"
        )
    files = {}
    for name, variable in TLS_OPTIONS.items():
        values = query.get(name) or [env.get(variable) or ""]
        files[name] = values[-1] or None
    if scheme == "mqtt" and any(name in query for name in TLS_OPTIONS):
        raise BrokerURLError("TLS options (ca, cert, key) need mqtts://")
    if files["key"] and not files["cert"]:
        raise BrokerURLError("a client key needs its certificate (cert / MQTT_CERT_FILE)")
    tls = scheme == "mqtts"
    return BrokerURL(
        scheme=scheme,
        host=parts.hostname,
        port=port or DEFAULT_PORTS[scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        ca_file=files["ca"] if tls else None,
        cert_file=files["cert"] if tls else None,
        key_file=files["key"] if tls else None,
    )


def from_environment(env: Mapping[str, str] | None = None) -> BrokerURL:
    """``MQTT_URL`` from the environment (the portal's processes and ``simulate``)."""
    env = os.environ if env is None else env
    return parse_broker_url(env.get("MQTT_URL") or DEFAULT_URL, env)
