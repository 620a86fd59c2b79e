"""The start-up check of the gateway link's broker (``manage.py preflight``'s ``mqtt``).

It lives with the devices app, which owns the link, and speaks through paho (the
portal's own MQTT client) after a plain TCP connect, with the URL parsed the one way
every process parses it (``gateway.brokerurl``).
"""

import math
import time

import paho.mqtt.client as mqtt
from django.conf import settings

from gateway.brokerurl import BrokerURLError, parse_broker_url
from portal.services import TIMEOUT, NotAnswering, ServiceStatus, missing, reachable, reason, wrong

START_MOSQUITTO = "mosquitto -d -p {port} (Debian package: mosquitto)"


def check_mqtt(url: str | None = None, timeout: float = TIMEOUT) -> ServiceStatus:
    """CONNECT through paho (the portal's own MQTT client) and expect an accepting CONNACK."""
    name, url = "Mosquitto (MQTT)", url or settings.MQTT_URL
    try:  # the parser every process uses (gateway.brokerurl)
        broker = parse_broker_url(url)
    except BrokerURLError as exc:
        return ServiceStatus(name, False, f"MQTT_URL: {exc}")
    host, port, where = broker.host, broker.port, broker.address
    try:
        reachable((host, port), timeout)
    except NotAnswering as exc:
        return missing(name, where, exc, START_MOSQUITTO.format(port=port))
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id="fleetgate-preflight",
        protocol=mqtt.MQTTv311,
    )
    broker.configure(client)
    client.connect_timeout = timeout
    answers = []
    client.on_connect = lambda c, userdata, flags, reason_code, props: answers.append(reason_code)
    try:
        client.connect(host, port, keepalive=max(5, math.ceil(timeout)))
        deadline = time.monotonic() + timeout
        while not answers and time.monotonic() < deadline:
            client.loop(timeout=0.05)
    except OSError as exc:
        return wrong(name, where, f"no CONNACK: {reason(exc)}")
    finally:
        client.disconnect()
        client.loop(timeout=0.01)  # sends the DISCONNECT: the broker logs a clean goodbye
    if not answers:
        return wrong(name, where, "no CONNACK: timed out")
    if answers[0].is_failure:
        return wrong(
            name,
            where,
            f"CONNECT refused: {str(answers[0]).lower()}",
            "check the user and password in MQTT_URL",
        )
    return ServiceStatus(name, True, f"Mosquitto (MQTT) answers at {where}")
