"""``mqtts://`` end to end on loopback: a throwaway CA, a private Mosquitto with a TLS
listener and the generated accounts, and the real agent ↔ bridge ↔ worker round trip.

Every portal process reads MQTT_URL through ``gateway.brokerurl`` (the CA from the URL's
``?ca=`` or MQTT_CA_FILE); the agent reads its ``broker_url`` the same way. The broker's
certificate is verified, host name included; a client that does not trust the CA is
refused.
"""

import datetime
import ipaddress
import socket
import ssl
import threading
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.management import call_command

from devices import broker, jobs, operations
from devices.bridge import Bridge
from devices.choices import DeviceState
from devices.lifecycle import Action
from devices.models import Device, Gateway, Operation, OperationState
from devices.preflight import check_mqtt
from gateway.config import AgentConfig
from tests.factories import make_gateway, make_license, make_member, make_organization
from tests.gateway.portal_double import free_port
from tests.test_bridge_restart import AgentThread, wait_for
from tests.test_broker_accounts import PORTAL_PASSWORD, PORTAL_USER, start_mosquitto

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

DEVICES = 20


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca_and_server_cert(directory):
    """A CA valid for a day and a certificate for 127.0.0.1 signed by it (PEM files)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Fleetgate test CA"))
        .issuer_name(_name("Fleetgate test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = {name: directory / f"{name}.pem" for name in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(pem))
    paths["cert"].write_bytes(cert.public_bytes(pem))
    paths["key"].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def test_agent_and_bridge_round_trip_over_mqtts_with_a_private_ca(tmp_path, settings, monkeypatch):
    pki = make_ca_and_server_cert(tmp_path)
    port = free_port()
    url = f"mqtts://{PORTAL_USER}:{PORTAL_PASSWORD}@127.0.0.1:{port}?ca={pki['ca']}"
    settings.MQTT_URL = url
    organization = make_organization()
    user = make_member(organization, ["administrator"])
    make_license(organization, seats=DEVICES)
    uid, secret = f"tls-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    gateway = make_gateway(organization, uid=uid, secret=secret)
    password = broker.issue_password(gateway)
    gateway.save(update_fields=["broker_password_hash"])

    conf_dir = tmp_path / "mosquitto"
    call_command(
        "broker_config",
        "--out",
        str(conf_dir),
        "--listen",
        f"127.0.0.1:{port}",
        "--certfile",
        str(pki["cert"]),
        "--keyfile",
        str(pki["key"]),
    )
    mosquitto = start_mosquitto(conf_dir / "mosquitto.conf", port)
    publisher = jobs.CommandPublisher()  # the worker's connection, over TLS
    monkeypatch.setattr(jobs.CommandPublisher, "_instance", publisher)
    bridge = Bridge(client_id=f"tls-bridge-{uuid.uuid4().hex}", batch_window=0.02)
    bridge_thread = threading.Thread(target=bridge.run, daemon=True)
    agent = AgentThread(
        AgentConfig(
            gateway_uid=uid,
            secret=secret,
            state_dir=tmp_path / "agent",
            broker_url=f"mqtts://127.0.0.1:{port}?ca={pki['ca']}",
            broker_password=password,
            driver_options={"devices": DEVICES, "latency_ms": 5, "events_per_s": 20},
        )
    )
    try:
        assert check_mqtt().ok, check_mqtt().message  # preflight, over TLS, with the login
        bridge_thread.start()
        wait_for(bridge.connected.is_set, 10, "the bridge to connect over TLS")
        agent.start()
        devices = Device.objects.for_organization(organization)
        wait_for(lambda: devices.count() == DEVICES, 20, "the agent's discovery")
        wait_for(lambda: Gateway.objects.get(pk=gateway.pk).is_online, 10, "the gateway online")
        operations.start(organization, user, Action.PROVISION, devices, "all")
        assert jobs.dispatch(gateway.pk)["sent"] == DEVICES
        done = Operation.objects.filter(gateway=gateway, state=OperationState.DONE)
        wait_for(lambda: done.count() == DEVICES, 30, "every result over TLS")
        assert set(devices.values_list("state", flat=True)) == {DeviceState.PROVISIONED}

        # A client that does not trust the CA gets no connection.
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")
    finally:
        agent.stop()
        publisher.client.disconnect()
        publisher.client.loop_stop()
        bridge.stop()
        bridge_thread.join(10)
        mosquitto.terminate()
        mosquitto.wait(10)
    refused = {k for k in bridge.stats if k.startswith("rejected.")} - {"rejected.replayed"}
    assert not refused, dict(bridge.stats)
