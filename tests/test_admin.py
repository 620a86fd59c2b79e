"""The Django admin for support staff: scoping, search, read-only state, masked secrets."""

from types import SimpleNamespace

import pytest
from django.contrib import admin
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from devices.admin import DeviceAdmin, GatewayAdmin
from devices.choices import DeviceState
from devices.models import Device, DeviceGroup, DeviceType, Gateway
from portal import audit
from portal.admin import MASK
from portal.models import AuditEntry, DashboardLayout, Membership, Organization
from portal.tenancy import CurrentOrganizationMiddleware
from tests.factories import (
    make_device,
    make_device_type,
    make_gateway,
    make_group,
    make_member,
    make_organization,
    make_staff,
)

pytestmark = pytest.mark.django_db


def make_world(name):
    """One organization with one row of every admin-visible model."""
    org = make_organization(name)
    member = make_member(org, ["administrator"], username=f"{name.lower()}-admin")
    gateway = make_gateway(org, uid=f"{name.lower()}-gw", name=f"{name} gateway")
    group = make_group(org, name=f"{name} group")
    device = make_device(
        org,
        serial_number=f"{name.upper()}-0001",
        hardware_id=f"AA:BB:CC:{name[:2].upper()}:00:01",
        name=f"{name} sensor",
        gateway=gateway,
    )
    device.groups.add(group)
    entry = audit.record(org, member, "member.add", [Membership.objects.get(user=member)])
    layout = DashboardLayout.objects.create(user=member, layout={"order": ["devices"]})
    return SimpleNamespace(
        org=org,
        member=member,
        gateway=gateway,
        group=group,
        device=device,
        entry=entry,
        layout=layout,
        memberships=set(Membership.objects.filter(organization=org).values_list("pk", flat=True)),
    )


@pytest.fixture
def acme():
    return make_world("Acme")


@pytest.fixture
def globex():
    return make_world("Globex")


def changelist(client, model, **params):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    response = client.get(url, params)
    assert response.status_code == 200, response.status_code
    return response


def listed_pks(response):
    return {obj.pk for obj in response.context["cl"].result_list}


def expected_rows(world):
    return {
        Organization: {world.org.pk},
        Membership: world.memberships,
        AuditEntry: {world.entry.pk},
        DashboardLayout: {world.layout.pk},
        Gateway: {world.gateway.pk},
        DeviceGroup: {world.group.pk},
        Device: {world.device.pk},
    }


SCOPED_MODELS = [
    Organization,
    Membership,
    AuditEntry,
    DashboardLayout,
    Gateway,
    DeviceGroup,
    Device,
]


@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda m: m.__name__)
def test_superuser_sees_every_organizations_rows(client, acme, globex, model):
    client.force_login(make_staff(superuser=True))
    expected = expected_rows(acme)[model] | expected_rows(globex)[model]
    assert listed_pks(changelist(client, model)) == expected


@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda m: m.__name__)
def test_staff_member_of_one_organization_sees_only_its_rows(client, acme, globex, model):
    staff = make_staff(acme.org)
    client.force_login(staff)
    expected = expected_rows(acme)[model]
    if model is Membership:
        expected = expected | {Membership.objects.get(user=staff).pk}
    response = changelist(client, model)
    assert listed_pks(response) == expected
    assert "Globex" not in response.content.decode()  # not even in a list filter


def test_staff_without_membership_sees_nothing(client, acme):
    client.force_login(make_staff())
    for model in SCOPED_MODELS:
        assert listed_pks(changelist(client, model)) == set()


def test_device_types_are_a_shared_catalogue_only_superusers_change(client, acme):
    device_type = acme.device.device_type
    client.force_login(make_staff(acme.org))
    assert device_type.pk in listed_pks(changelist(client, DeviceType))
    add_url = reverse("admin:devices_devicetype_add")
    assert client.get(add_url).status_code == 403
    change_url = reverse("admin:devices_devicetype_change", args=[device_type.pk])
    assert client.post(change_url, {"name": "Renamed", "protocol": "ble"}).status_code == 403
    client.force_login(make_staff(superuser=True))
    assert client.get(add_url).status_code == 200


@pytest.mark.parametrize(
    "model, attr",
    [(Device, "device"), (Gateway, "gateway"), (DeviceGroup, "group"), (Organization, "org")],
)
def test_staff_cannot_open_another_organizations_row(client, acme, globex, model, attr):
    client.force_login(make_staff(acme.org))
    meta = model._meta
    foreign = getattr(globex, attr)
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[foreign.pk])
    response = client.get(url)
    assert response.status_code == 302  # the admin's "doesn't exist" redirect
    assert response["Location"] == reverse("admin:index")
    own = getattr(acme, attr)
    assert (
        client.get(
            reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[own.pk])
        ).status_code
        == 200
    )


# --- search ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "term", ["ACME-0001", "acme-0001", "aa:bb:cc:ac", "Acme sensor", "acme-gw"]
)
def test_device_search_by_serial_hardware_id_name_gateway(client, acme, globex, term):
    client.force_login(make_staff(superuser=True))
    assert listed_pks(changelist(client, Device, q=term)) == {acme.device.pk}


def test_staff_search_never_finds_another_organizations_device(client, acme, globex):
    client.force_login(make_staff(acme.org))
    assert listed_pks(changelist(client, Device, q="GLOBEX-0001")) == set()
    assert listed_pks(changelist(client, Device, q="ACME-0001")) == {acme.device.pk}


@pytest.mark.parametrize(
    "model, term, attr",
    [
        (Gateway, "globex-gw", "gateway"),
        (DeviceGroup, "Globex group", "group"),
        (Organization, "glob", "org"),
        (AuditEntry, "globex-admin", "entry"),
    ],
)
def test_search_other_models(client, acme, globex, model, term, attr):
    client.force_login(make_staff(superuser=True))
    assert listed_pks(changelist(client, model, q=term)) == {getattr(globex, attr).pk}


def test_membership_search_by_username(client, acme, globex):
    client.force_login(make_staff(superuser=True))
    found = listed_pks(changelist(client, Membership, q="globex-admin"))
    assert found == {Membership.objects.get(user=globex.member).pk}


def test_device_filters_by_state_and_gateway_online(client, acme, globex):
    Device.objects.filter(pk=globex.device.pk).update(state=DeviceState.PROVISIONED)
    Gateway.objects.filter(pk=acme.gateway.pk).update(is_online=True)
    client.force_login(make_staff(superuser=True))
    assert listed_pks(changelist(client, Device, state="provisioned")) == {globex.device.pk}
    assert listed_pks(changelist(client, Device, gateway__is_online__exact="1")) == {acme.device.pk}


def test_device_changelist_queries_do_not_grow_with_rows(client, acme):
    client.force_login(make_staff(superuser=True))
    changelist(client, Device)
    with CaptureQueriesContext(connection) as few:
        changelist(client, Device)
    device_type = make_device_type()
    for _ in range(10):
        make_device(acme.org, device_type=device_type, gateway=make_gateway(acme.org))
    with CaptureQueriesContext(connection) as many:
        changelist(client, Device)
    assert len(many) == len(few)


# --- editing ------------------------------------------------------------------


def device_form_data(device, **overrides):
    data = {
        "organization": device.organization_id,
        "device_type": device.device_type_id,
        "serial_number": device.serial_number,
        "hardware_id": device.hardware_id or "",
        "name": device.name,
        "gateway": device.gateway_id or "",
        "groups": [g.pk for g in device.groups.all()],
        "location": device.location,
        "_save": "Save",
    }
    data.update(overrides)
    return data


def test_device_state_is_read_only(client, acme):
    client.force_login(make_staff(superuser=True))
    url = reverse("admin:devices_device_change", args=[acme.device.pk])
    page = client.get(url)
    html = page.content.decode()
    assert 'name="state"' not in html
    assert "Discovered" in html  # shown, read-only
    assert "state" not in page.context["adminform"].form.fields

    response = client.post(url, device_form_data(acme.device, state="provisioned", name="Renamed"))
    assert response.status_code == 302
    acme.device.refresh_from_db()
    assert acme.device.name == "Renamed"
    assert acme.device.state == DeviceState.DISCOVERED


def test_foreign_key_choices_are_scoped_for_staff(client, acme, globex):
    client.force_login(make_staff(acme.org))
    form = client.get(reverse("admin:devices_device_add")).context["adminform"].form
    assert set(form.fields["organization"].queryset) == {acme.org}
    assert set(form.fields["gateway"].queryset) == {acme.gateway}
    assert set(form.fields["groups"].queryset) == {acme.group}


def test_staff_cannot_put_a_device_into_another_organization(client, acme, globex):
    client.force_login(make_staff(acme.org))
    url = reverse("admin:devices_device_change", args=[acme.device.pk])
    response = client.post(url, device_form_data(acme.device, organization=globex.org.pk))
    assert response.status_code == 200
    assert "organization" in response.context["adminform"].form.errors
    acme.device.refresh_from_db()
    assert acme.device.organization == acme.org


def test_device_cannot_join_another_organizations_group_or_gateway(client, acme, globex):
    client.force_login(make_staff(superuser=True))  # sees both, so only validation stops it
    url = reverse("admin:devices_device_change", args=[acme.device.pk])
    response = client.post(url, device_form_data(acme.device, groups=[globex.group.pk]))
    assert response.status_code == 200
    assert "another organization" in response.context["adminform"].form.errors["groups"][0]
    response = client.post(url, device_form_data(acme.device, gateway=globex.gateway.pk))
    assert response.status_code == 200
    assert "another organization" in response.context["adminform"].form.errors["gateway"][0]
    assert set(acme.device.groups.all()) == {acme.group}


def test_audit_log_is_read_only(client, acme):
    client.force_login(make_staff(superuser=True))
    url = reverse("admin:portal_auditentry_change", args=[acme.entry.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert client.post(url, {"action": "forged"}).status_code == 403
    assert client.get(reverse("admin:portal_auditentry_add")).status_code == 403
    assert (
        client.post(reverse("admin:portal_auditentry_delete", args=[acme.entry.pk])).status_code
        == 403
    )
    acme.entry.refresh_from_db()
    assert acme.entry.action == "member.add"


def test_only_superusers_add_organizations(client, acme):
    url = reverse("admin:portal_organization_add")
    client.force_login(make_staff(acme.org))
    assert client.get(url).status_code == 403
    client.force_login(make_staff(superuser=True))
    assert client.get(url).status_code == 200


def test_organization_page_shows_member_inline(client, acme):
    client.force_login(make_staff(acme.org))
    page = client.get(reverse("admin:portal_organization_change", args=[acme.org.pk]))
    assert page.status_code == 200
    assert "acme-admin" in page.content.decode()


# --- masked secrets -------------------------------------------------------------


class SecretGatewayAdmin(GatewayAdmin):
    """Until gateways get their secret, the uid stands in for one.

    It is also listed as read-only, the easy mistake that would print the plaintext.
    """

    masked_fields = ("uid",)
    readonly_fields = [*GatewayAdmin.readonly_fields, "uid"]


class SecretDeviceAdmin(DeviceAdmin):
    """A masked field inside declared fieldsets."""

    masked_fields = ("hardware_id",)


@pytest.fixture
def superuser_request():
    request = RequestFactory().get("/")
    request.user = make_staff(superuser=True)
    request.session = {}
    CurrentOrganizationMiddleware(lambda request: None)(request)  # what templates expect
    return request


def test_masked_field_is_kept_out_of_lists_search_filters_and_forms(acme, superuser_request):
    model_admin = SecretGatewayAdmin(Gateway, admin.site)
    request, gateway = superuser_request, acme.gateway
    assert "uid" not in model_admin.get_list_display(request)
    assert "uid" not in model_admin.get_search_fields(request)
    assert "uid" not in model_admin.get_form(request, gateway, change=True).base_fields
    assert "uid_masked" in model_admin.get_readonly_fields(request, gateway)
    assert "uid_masked" in model_admin.get_fields(request, gateway)
    assert model_admin.uid_masked(gateway) == MASK
    assert model_admin.uid_masked(Gateway(uid="")) == "not set"
    assert not model_admin.lookup_allowed("uid__startswith", "acme", request)
    assert model_admin.lookup_allowed("is_online__exact", "1", request)
    # Search no longer matches on the secret.
    results, _ = model_admin.get_search_results(request, Gateway.objects.all(), "acme-gw")
    assert not results.exists()


def test_masked_field_renders_as_dots_on_the_change_page(acme, superuser_request):
    response = SecretGatewayAdmin(Gateway, admin.site).change_view(
        superuser_request, str(acme.gateway.pk)
    )
    html = response.render().content.decode()
    assert MASK in html
    assert "acme-gw" not in html


def test_masked_field_inside_fieldsets(acme, superuser_request):
    model_admin = SecretDeviceAdmin(Device, admin.site)
    request, device = superuser_request, acme.device
    fields = [f for _, opts in model_admin.get_fieldsets(request, device) for f in opts["fields"]]
    assert "hardware_id_masked" in fields and "hardware_id" not in fields
    assert "hardware_id" not in model_admin.get_form(request, device, change=True).base_fields
    html = model_admin.change_view(request, str(device.pk)).render().content.decode()
    assert MASK in html and device.hardware_id not in html


def test_masked_field_cannot_be_changed_by_post(acme, superuser_request):
    """A crafted POST with the secret's field name is ignored: the form has no such field."""
    model_admin = SecretGatewayAdmin(Gateway, admin.site)
    form_class = model_admin.get_form(superuser_request, acme.gateway, change=True)
    form = form_class(
        {"uid": "stolen", "name": "Renamed", "organization": acme.org.pk}, instance=acme.gateway
    )
    assert form.is_valid(), form.errors
    form.save()
    acme.gateway.refresh_from_db()
    assert acme.gateway.uid == "acme-gw" and acme.gateway.name == "Renamed"
