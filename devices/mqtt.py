"""The portal's MQTT clients (bridge, job publishers): one way to build them."""

import socket
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from django.conf import settings


def broker_address(url: str | None = None) -> tuple[str, int, str | None, str | None]:
    parts = urlsplit(url or settings.MQTT_URL)
    if parts.scheme not in ("mqtt", "tcp"):
        raise ValueError(f"MQTT_URL must look like mqtt://host:1883, not {parts.scheme}://")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname or "127.0.0.1", parts.port or 1883, user, password


def set_nodelay(client: mqtt.Client) -> None:
    """Without TCP_NODELAY each QoS 1 round trip waits ~40 ms on delayed ACKs (STACK-NOTES)."""
    sock = client.socket()
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def make_client(
    client_id: str,
    *,
    clean_session: bool = True,
    manual_ack: bool = False,
    url: str | None = None,
    keepalive: int = 30,
) -> mqtt.Client:
    """A client with its broker address set; ``loop_start()``/``loop_forever()`` connect it
    and reconnect it by themselves after a broker restart."""
    host, port, user, password = broker_address(url)
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
        manual_ack=manual_ack,
    )
    if user:
        client.username_pw_set(user, password)
    client.max_inflight_messages_set(100)  # paho scans every in-flight message per ack
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    client.connect_async(host, port, keepalive=keepalive)
    return client
