"""The Gateways widget and its dialogs: the live-patchable list, adding a gateway with
its secret shown once (and a config file the agent really loads), rotating and deleting,
role rules, organization isolation, audit entries and a constant number of queries."""

import html
import json
import tomllib
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from devices.agent_config import toml_string
from devices.ingest import GatewayDirectory
from devices.models import Gateway
from gateway.config import load_config
from gateway.protocol import (
    Message,
    MsgType,
    ProtocolError,
    Reason,
    ReplayGuard,
    decode,
    encode,
    new_id,
    topic,
)
from portal.choices import AuditOutcome, Role
from portal.models import AuditEntry
from tests.factories import (
    make_device,
    make_device_type,
    make_gateway,
    make_member,
)

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/"}
RESULTS = {**HTMX, "HTTP_HX_TARGET": "gateways-results"}
LIST = reverse("devices:gateways-widget")
CREATE = reverse("devices:gateway-create")


def rotate_url(gateway):
    return reverse("devices:gateway-rotate", args=[gateway.pk])


def delete_url(gateway):
    return reverse("devices:gateway-delete", args=[gateway.pk])


def raw_secret(gateway):
    """The column as stored, bypassing the field's decryption."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM devices_gateway WHERE id = %s", [gateway.pk])
        return cursor.fetchone()[0]


def status_message(uid, secret):
    body = {"state": "online", "session": new_id(), "will": False}
    return topic(uid, MsgType.STATUS), encode(Message(MsgType.STATUS, uid, body), secret)


def verify(uid, secret):
    """Decode a message signed with ``secret`` the way the bridge does."""
    name, payload = status_message(uid, secret)
    return decode(name, payload, GatewayDirectory().secret, ReplayGuard())


@pytest.fixture
def iot_manager(org):
    return make_member(org, [Role.IOT_MANAGER])


def create(client, name="Roof", uid="", **extra):
    return client.post(CREATE, {"name": name, "uid": uid}, **{**HTMX, **extra})


# --- the list ---------------------------------------------------------------------------


def test_list_shows_own_gateways_with_status_for_live_updates(login, viewer, org, other_org):
    seen = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    online = make_gateway(
        org,
        "gw-roof",
        name="Roof",
        is_online=True,
        last_seen=seen,
        agent_info={"agent": "fleetgate-gateway/1.2", "driver": "simulated"},
    )
    never = make_gateway(org, "gw-cellar", name="Cellar")
    device_type = make_device_type()
    for _ in range(3):
        make_device(org, device_type, gateway=online)
    make_gateway(other_org, "gw-theirs", name="Theirs")

    response = login(viewer).get(LIST, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert [(g.name, g.device_count) for g in response.context["gateways"]] == [
        ("Cellar", 0),
        ("Roof", 3),
    ]
    assert f'<tr id="gateway-{online.pk}" data-gateway-id="{online.pk}">' in body
    assert (
        '<td class="gateway-status" data-online="true"><span class="badge badge-green">Online</span></td>'
        in body
    )
    assert (
        '<td class="gateway-status" data-online="false"><span class="badge badge-grey">Offline</span></td>'
        in body
    )
    assert (
        '<td class="gateway-last-seen"><time datetime="2024-05-06T07:08:09Z" data-relative'
        ' title="2024-05-06 07:08:09 UTC">'
    ) in body
    assert f'<tr id="gateway-{never.pk}"' in body and "Never" in body
    assert "fleetgate-gateway/1.2" in body and "simulated" in body
    assert "gw-roof" in body and "Theirs" not in body and "gw-theirs" not in body
    assert 'id="widget-gateways-count" hx-swap-oob="true" title="2 gateways">2<' in body
    assert "liveResync from:body" in body and 'id="gateways-results"' in body


def test_list_as_a_full_page_and_as_the_whole_widget(login, viewer, org):
    make_gateway(org, name="Roof")
    client = login(viewer)
    page = client.get(LIST).content.decode()
    assert "<html" in page and "Roof" in page and 'id="gateways-filter"' in page
    widget = client.get(LIST, **HTMX, HTTP_HX_TARGET="widget-gateways-body").content.decode()
    assert "<html" not in widget and 'id="gateways-filter"' in widget and "Roof" in widget
    results = client.get(LIST, **RESULTS).content.decode()
    assert 'id="gateways-filter"' not in results and "Roof" in results


def test_search_by_name_or_uid_and_filter_by_status(login, viewer, org):
    make_gateway(org, "gw-north", name="North wing", is_online=True)
    make_gateway(org, "gw-south", name="South wing")
    make_gateway(org, "hall-1", name="Hall")
    client = login(viewer)

    def names(**params):
        response = client.get(LIST, params, **RESULTS)
        return [g.name for g in response.context["gateways"]]

    assert names(q="wing") == ["North wing", "South wing"]
    assert names(q="HALL-") == ["Hall"]
    assert names(status="online") == ["North wing"]
    assert names(status="offline", q="wing") == ["South wing"]
    assert names(status="bogus") == ["Hall", "North wing", "South wing"]
    body = client.get(LIST, {"q": "zzz"}, **RESULTS).content.decode()
    assert "No gateway matches." in body


def test_list_pages_by_25_and_keeps_the_filter_in_its_links(login, viewer, org):
    for i in range(30):
        make_gateway(org, f"gw-{i:02d}", name=f"Gateway {i:02d}")
    client = login(viewer)
    first = client.get(LIST, {"q": "gateway"}, **RESULTS)
    assert len(first.context["gateways"]) == 25
    assert f"{LIST}?q=gateway&amp;page=2" in first.content.decode()
    second = client.get(LIST, {"q": "gateway", "page": 2}, **RESULTS)
    assert [g.name for g in second.context["gateways"]][0] == "Gateway 25"
    assert len(second.context["gateways"]) == 5


def test_list_is_a_constant_number_of_queries_and_never_reads_a_secret(login, viewer, org):
    device_type = make_device_type()
    client = login(viewer)

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert client.get(LIST, **RESULTS).status_code == 200
        assert not any('"secret"' in q["sql"] for q in captured), "the list loaded a secret"
        return len(captured)

    def add(count):
        for _ in range(count):
            gateway = make_gateway(org, secret="s" * 43, agent_info={"driver": "simulated"})
            make_device(org, device_type, gateway=gateway)

    add(5)
    few = queries()
    add(45)
    assert queries() == few == 5  # session, user, memberships; count, annotated page


def test_viewer_sees_no_change_buttons_and_iot_manager_does(login, viewer, iot_manager, org):
    make_gateway(org, name="Roof")
    body = login(viewer).get(LIST, **HTMX).content.decode()
    # Shown, refused with the reason (issue 9, point 5), and leading nowhere.
    for label in ("+ New gateway", "Rotate secret…", "Delete…"):
        assert f'data-refusal="{label}: needs Administrator or IoT Manager."' in body
    assert CREATE not in body and "rotate-secret/" not in body and "/delete/" not in body
    assert "Show its devices" in body
    body = login(iot_manager).get(LIST, **HTMX).content.decode()
    assert "New gateway" in body and "Rotate secret…" in body and "Delete…" in body


# --- create: the secret shown once ------------------------------------------------------------


def test_create_shows_the_secret_once_and_never_again(login, iot_manager, org):
    client = login(iot_manager)
    assert client.get(CREATE, **HTMX).status_code == 200
    response = create(client, name="  Roof   top ", uid="gw-roof")
    assert response.status_code == 200
    gateway = Gateway.objects.get()
    secret = gateway.secret
    assert (gateway.organization, gateway.name, gateway.uid) == (org, "Roof top", "gw-roof")
    assert len(secret) >= 43 and gateway.secret_rotated_at is not None
    body = response.content.decode()
    assert secret in body and 'id="dialog-form"' in body
    assert '<h2 id="modal-title" hx-swap-oob="true">' in body
    assert response["HX-Trigger"] == "gatewaysChanged"  # reloads the list, keeps the dialog
    assert "no-store" in response["Cache-Control"]

    assert secret not in raw_secret(gateway)  # encrypted at rest
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.object_ids, entry.user) == (
        "gateway.create",
        [gateway.pk],
        iot_manager,
    )
    assert secret not in json.dumps(entry.detail)
    for url in (LIST, rotate_url(gateway), delete_url(gateway)):
        for headers in (HTMX, {}):
            page = client.get(url, **headers)
            assert page.status_code == 200 and secret not in page.content.decode(), url
    assert "gw-roof" in client.get(LIST, **HTMX).content.decode()


def test_create_generates_a_uid_when_blank(login, iot_manager):
    response = create(login(iot_manager), uid="   ")
    gateway = Gateway.objects.get()
    assert gateway.uid.startswith("gw-") and len(gateway.uid) == 11
    gateway.full_clean()  # the model's validator agrees
    assert gateway.uid in response.content.decode()


def test_generated_config_is_loaded_by_the_agent(login, iot_manager, settings, tmp_path):
    settings.MQTT_URL = "mqtt://portal:hunter2@broker.example:1884"
    response = create(login(iot_manager), name='Roof "A"\n# injected = 1', uid="gw-roof")
    gateway = Gateway.objects.get()
    text = response.context["config"]
    assert html.escape(text, quote=True) in response.content.decode()
    assert "hunter2" not in text and "portal" not in text  # the portal's broker login

    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    assert config.gateway_uid == "gw-roof"
    assert config.secret == gateway.secret
    assert config.broker_url == "mqtt://broker.example:1884"
    assert config.state_dir == tmp_path / "gateway-state"
    assert "python -m gateway run --config gateway.toml" in response.content.decode()


@pytest.mark.parametrize(
    ("mqtt_url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:1883"),
        ("tcp://broker:1883", "mqtt://broker:1883"),
        ("mqtts://user@broker.example", "mqtts://broker.example"),
        ("mqtt://[::1]:1883", "mqtt://[::1]:1883"),
    ],
)
def test_config_broker_url_follows_settings(login, iot_manager, settings, mqtt_url, expected):
    settings.MQTT_URL = mqtt_url
    text = create(login(iot_manager)).context["config"]
    assert tomllib.loads(text)["broker_url"] == expected


@pytest.mark.parametrize(
    "value", ["plain", 'quote " and \\ back', "tab\tnew\nline\x7f\x00", "snow ☃ and 😀"]
)
def test_toml_string_round_trips(value):
    assert tomllib.loads(f"v = {toml_string(value)}")["v"] == value


def field_errors(response, field):
    return response.context["form"].errors.get(field, [])


@pytest.mark.parametrize(
    ("uid", "message"),
    [
        ("gw-taken", "A gateway with this UID already exists"),
        ("theirs", "A gateway with this UID already exists"),
        ("bad uid!", "Use letters, digits, '-' and '_' only."),
        ("x" * 65, "at most 64 characters"),
    ],
)
def test_bad_or_taken_uid_is_a_field_error(login, iot_manager, org, other_org, uid, message):
    make_gateway(org, "gw-taken")
    make_gateway(other_org, "theirs")  # UIDs name MQTT topics: unique across organizations
    response = create(login(iot_manager), uid=uid)
    assert response.status_code == 200
    assert any(message in error for error in field_errors(response, "uid"))
    assert 'id="dialog-form"' in response.content.decode()
    assert Gateway.objects.count() == 2 and not AuditEntry.objects.exists()


def test_create_without_a_name_is_a_field_error(login, iot_manager):
    response = create(login(iot_manager), name="  ")
    assert response.status_code == 200 and field_errors(response, "name")
    assert not Gateway.objects.exists()


def test_create_without_htmx_shows_the_secret_on_a_page(login, iot_manager):
    response = login(iot_manager).post(CREATE, {"name": "Roof", "next": "/devices/"})
    gateway = Gateway.objects.get()
    body = response.content.decode()
    assert response.status_code == 200 and "<html" in body
    assert gateway.secret in body and 'href="/devices/"' in body
    assert "no-store" in response["Cache-Control"]


# --- rotate -----------------------------------------------------------------------------


def test_rotate_replaces_the_secret_and_the_old_one_stops_verifying(login, iot_manager, org):
    gateway = make_gateway(org, "gw-roof", name="Roof", secret="old-secret-" + "x" * 32)
    old_raw = raw_secret(gateway)
    assert verify("gw-roof", "old-secret-" + "x" * 32).gw == "gw-roof"

    client = login(iot_manager)
    assert "Rotate secret" in client.get(rotate_url(gateway), **HTMX).content.decode()
    response = client.post(rotate_url(gateway), **HTMX)
    assert response.status_code == 200
    gateway.refresh_from_db()
    new = gateway.secret
    assert new != "old-secret-" + "x" * 32 and new in response.content.decode()
    assert raw_secret(gateway) != old_raw and new not in raw_secret(gateway)
    assert response["HX-Trigger"] == "gatewaysChanged"
    assert "no-store" in response["Cache-Control"]

    with pytest.raises(ProtocolError) as refused:
        verify("gw-roof", "old-secret-" + "x" * 32)
    assert refused.value.reason is Reason.BAD_SIGNATURE
    assert verify("gw-roof", new).gw == "gw-roof"

    entry = AuditEntry.objects.get()
    assert (entry.action, entry.object_ids) == ("gateway.rotate_secret", [gateway.pk])
    assert new not in json.dumps(entry.detail)
    assert new not in client.get(LIST, **HTMX).content.decode()


# --- delete -----------------------------------------------------------------------------


def test_delete_a_gateway_without_devices(login, iot_manager, org):
    gateway = make_gateway(org, "gw-roof", name="Roof")
    client = login(iot_manager)
    assert "cannot be undone" in client.get(delete_url(gateway), **HTMX).content.decode()
    response = client.post(delete_url(gateway), **HTMX)
    assert response.status_code == 204
    event = json.loads(response["HX-Trigger"])
    assert event == {"groupsChanged": {"message": "Deleted gateway “Roof” (gw-roof)."}}
    assert not Gateway.objects.exists()
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.object_type, entry.object_ids, entry.outcome) == (
        "gateway.delete",
        "gateway",
        [gateway.pk],
        AuditOutcome.SUCCESS,
    )


def test_delete_is_refused_while_devices_are_attached(login, iot_manager, org):
    gateway = make_gateway(org, "gw-roof", name="Roof")
    device = make_device(org, gateway=gateway)
    client = login(iot_manager)
    dialog = client.get(delete_url(gateway), **HTMX)
    assert "still has 1 device, so it cannot be deleted" in dialog.content.decode()
    assert dialog.context["blocked"] is True
    response = client.post(delete_url(gateway), **HTMX)
    assert response.status_code == 200
    assert "still has 1 device, so it cannot be deleted" in response.content.decode()
    assert Gateway.objects.filter(pk=gateway.pk).exists()
    device.refresh_from_db()
    assert device.gateway_id == gateway.pk
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.outcome) == ("gateway.delete", AuditOutcome.FAILURE)


# --- roles and isolation -----------------------------------------------------------------


@pytest.mark.parametrize("roles", [(), (Role.DEVICE_MANAGER,)], ids=["no-role", "device-manager"])
def test_users_without_manage_gateways_get_403(login, org, roles):
    gateway = make_gateway(org, "gw-roof", name="Roof", secret="s" * 43)
    client = login(make_member(org, roles))
    for url in (CREATE, rotate_url(gateway), delete_url(gateway)):
        assert client.get(url, **HTMX).status_code == 403, url
        assert client.post(url, {"name": "X", "uid": "gw-x"}, **HTMX).status_code == 403, url
    gateway.refresh_from_db()
    assert gateway.secret == "s" * 43 and Gateway.objects.count() == 1
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize("roles", [(Role.IOT_MANAGER,), (Role.ADMINISTRATOR,)])
def test_iot_managers_and_administrators_may_add_gateways(login, org, roles):
    assert create(login(make_member(org, roles))).status_code == 200
    assert Gateway.objects.for_organization(org).count() == 1


def test_another_organizations_gateway_is_404(login, iot_manager, other_org):
    foreign = make_gateway(other_org, "gw-theirs", name="Theirs", secret="s" * 43)
    client = login(iot_manager)
    for url in (rotate_url(foreign), delete_url(foreign)):
        assert client.get(url, **HTMX).status_code == 404, url
        response = client.post(url, **HTMX)
        assert response.status_code == 404 and "s" * 43 not in response.content.decode()
    foreign.refresh_from_db()
    assert foreign.secret == "s" * 43 and not AuditEntry.objects.exists()
