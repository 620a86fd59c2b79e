"""The portal's MQTT clients (bridge, job publishers, benchmarks): one way to build them.

``settings.MQTT_URL`` is read through ``gateway.brokerurl`` — the parser the agent,
``simulate`` and ``preflight`` use too — so every process agrees on ``mqtts://``.
"""

import socket

import paho.mqtt.client as mqtt
from django.conf import settings

from gateway.brokerurl import BrokerURL, parse_broker_url


def broker_url(url: str | None = None) -> BrokerURL:
    """``url`` (default ``settings.MQTT_URL``) parsed; raises ``BrokerURLError`` (a ValueError)."""
    return parse_broker_url(url or settings.MQTT_URL)


def set_nodelay(client: mqtt.Client) -> None:
    """Without TCP_NODELAY each QoS 1 round trip waits ~40 ms on delayed ACKs (STACK-NOTES)."""
    sock = client.socket()
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def new_client(
    client_id: str,
    *,
    clean_session: bool = True,
    manual_ack: bool = False,
    url: str | None = None,
    inflight: int = 100,
) -> mqtt.Client:
    """A paho client with the URL's login and TLS, not yet connected."""
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
        manual_ack=manual_ack,
    )
    broker_url(url).configure(client)
    client.max_inflight_messages_set(inflight)  # paho scans every in-flight message per ack
    return client


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
    address = broker_url(url)
    client = new_client(client_id, clean_session=clean_session, manual_ack=manual_ack, url=url)
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    client.connect_async(address.host, address.port, keepalive=keepalive)
    return client
