"""The Django admin keeps the portal's rules (issue 10, points 11 and 13)."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from portal.models import AuditEntry, Membership, Organization
from tests.factories import make_member, make_organization, make_staff

pytestmark = pytest.mark.django_db
User = get_user_model()


def change_url(membership):
    return reverse("admin:portal_membership_change", args=[membership.pk])


def roles_post(client, membership, **roles):
    data = {f"is_{name}": "on" for name, on in roles.items() if on}
    return client.post(change_url(membership), data)


@pytest.fixture
def acme():
    return make_organization("Acme")


def test_staff_cannot_grant_itself_the_administrator_role(client, acme):
    make_member(acme, ["administrator"])
    staff = make_staff(acme)  # a member without role groups, with every admin permission
    own = Membership.objects.get(user=staff)
    client.force_login(staff)
    response = roles_post(client, own, administrator=True)
    assert response.status_code == 200  # the form again, with the refusal
    assert "Only an Administrator of Acme" in response.content.decode()
    own.refresh_from_db()
    assert not own.is_administrator
    assert not AuditEntry.objects.exists()


def test_an_administrators_role_changes_in_the_admin_are_audited(client, acme):
    staff = make_staff(acme)
    Membership.objects.filter(user=staff).update(is_administrator=True)
    worker = Membership.objects.get(user=make_member(acme, ["device_manager"]))
    client.force_login(staff)
    response = roles_post(client, worker, iot_manager=True)
    assert response.status_code == 302
    worker.refresh_from_db()
    assert worker.roles == {"iot_manager"}
    entry = AuditEntry.objects.get()
    assert entry.action == "member.change_roles" and entry.user == staff
    assert entry.detail["before"] == ["device_manager"] and entry.detail["after"] == ["iot_manager"]


def test_the_last_administrator_cannot_be_demoted_or_removed_in_the_admin(client, acme):
    last = Membership.objects.get(user=make_member(acme, ["administrator"]))
    client.force_login(make_staff(superuser=True))
    response = roles_post(client, last, device_manager=True)
    assert "must keep at least one Administrator" in response.content.decode()
    delete = reverse("admin:portal_membership_delete", args=[last.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    last.refresh_from_db()
    assert last.is_administrator
    assert not AuditEntry.objects.exists()


def test_removing_a_member_in_the_admin_is_audited(client, acme):
    make_member(acme, ["administrator"])
    gone = Membership.objects.get(user=make_member(acme, ["device_manager"]))
    client.force_login(make_staff(superuser=True))
    delete = reverse("admin:portal_membership_delete", args=[gone.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not Membership.objects.filter(pk=gone.pk).exists()
    assert AuditEntry.objects.get().action == "member.remove"


def test_only_superusers_delete_an_organization(client, acme):
    staff = make_staff(acme)
    Membership.objects.filter(user=staff).update(is_administrator=True)
    client.force_login(staff)
    delete = reverse("admin:portal_organization_delete", args=[acme.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert Organization.objects.filter(pk=acme.pk).exists()


def test_nobody_adds_memberships_in_the_admin(client, acme):
    client.force_login(make_staff(superuser=True))
    assert client.get(reverse("admin:portal_membership_add")).status_code == 403


def test_the_user_admin_is_scoped_and_read_only_for_staff(client, acme):
    globex = make_organization("Globex")
    colleague = make_member(acme, ["administrator"], username="colleague")
    stranger = make_member(globex, username="stranger")
    staff = make_staff(acme)
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="auth"))
    client.force_login(staff)
    listing = client.get(reverse("admin:auth_user_changelist"))
    names = {u.username for u in listing.context["cl"].result_list}
    assert names == {"colleague", staff.username}
    assert client.get(reverse("admin:auth_user_change", args=[stranger.pk])).status_code in (
        302,
        404,
    )
    # Looking is all: no password reset, no flags, no new accounts.
    page = client.post(
        reverse("admin:auth_user_change", args=[staff.pk]),
        {"username": staff.username, "is_superuser": "on", "is_staff": "on"},
    )
    assert page.status_code == 403
    staff.refresh_from_db()
    assert not staff.is_superuser
    password = reverse("admin:auth_user_password_change", args=[colleague.pk])
    assert client.post(password, {"password1": "x", "password2": "x"}).status_code == 403
    assert client.get(reverse("admin:auth_user_add")).status_code == 403


@pytest.mark.parametrize("path", ["/admin/rq/", "/admin/rq/queues/0/", "/admin/rq/stats.json"])
def test_the_job_queues_are_for_superusers_only(client, acme, path):
    staff = make_staff(acme)
    client.force_login(staff)
    assert client.get(path).status_code == 403
    client.force_login(make_staff(superuser=True))
    assert client.get(path).status_code == 200


def test_the_queues_inside_the_admin_are_for_superusers_only(client, acme):
    client.force_login(make_staff(acme))
    assert client.get("/admin/django_rq/dashboard/").status_code in (403, 404)
    client.force_login(make_staff(superuser=True))
    assert client.get("/admin/django_rq/dashboard/").status_code == 200
