"""The agent's config file for one gateway, as the Gateways widget hands it out.

``gateway.config.load_config`` reads it back (the format is the agent's: TOML here);
a test loads what this writes, so the two cannot drift. The file carries the secret,
so it is written only into the one answer that shows the secret.
"""

from urllib.parse import urlsplit

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from gateway.config import AgentConfig

CONFIG_FILENAME = "gateway.toml"
RUN_COMMAND = f"python -m gateway run --config {CONFIG_FILENAME}"
STATE_DIR = "gateway-state"  # relative to the config file (gateway.config.load_config)
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def toml_string(value: str) -> str:
    """A TOML basic string; json.dumps is not one (surrogate escapes, raw DEL)."""
    out = []
    for char in str(value):
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def agent_broker_url() -> str:
    """settings.MQTT_URL as the agent spells it, without the portal's own login."""
    parts = urlsplit(settings.MQTT_URL)
    if parts.scheme not in ("mqtt", "tcp", "mqtts") or not parts.hostname:
        return AgentConfig.broker_url
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    return f"{'mqtts' if parts.scheme == 'mqtts' else 'mqtt'}://{host}{port}"


@sensitive_variables("secret")
def agent_config_toml(gateway, secret: str) -> str:
    """The agent's config file for ``python -m gateway run --config gateway.toml``."""
    name = "".join(c for c in gateway.name if c.isprintable())
    return "\n".join(
        [
            f"# Fleetgate gateway agent: {name}",
            f"# Run: {RUN_COMMAND}",
            f"gateway_uid = {toml_string(gateway.uid)}",
            f"secret = {toml_string(secret)}",
            f"state_dir = {toml_string(STATE_DIR)}  # relative to this file",
            f"broker_url = {toml_string(agent_broker_url())}",
            '# broker_password = "..."  # if the broker wants a login (user name: the UID)',
            "",
        ]
    )


def broker_is_loopback() -> bool:
    """The agent would dial this machine itself: fine for a demo, not for a real gateway."""
    return urlsplit(agent_broker_url()).hostname in LOOPBACK_HOSTS
