"""Members management in the portal, and switching between organizations."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from portal.choices import Role
from portal.models import AuditEntry, Invitation, Membership
from tests.factories import make_member, make_membership, make_organization, make_user

pytestmark = pytest.mark.django_db

ADMIN = Role.ADMINISTRATOR.value
DM = Role.DEVICE_MANAGER.value
IOT = Role.IOT_MANAGER.value
User = get_user_model()


@pytest.fixture
def other_org():
    return make_organization("Globex")


@pytest.fixture
def admin_user(org):
    return make_member(org, [ADMIN], username="alice")


def membership_of(user, organization):
    return Membership.objects.get(user=user, organization=organization)


def field_errors(response, form_key, field):
    return response.context[form_key].errors.get(field, [])


# --- who gets in ------------------------------------------------------------------


def member_urls(membership_pk):
    return [
        ("get", reverse("members")),
        ("get", reverse("member-add")),
        ("post", reverse("member-add")),
        ("get", reverse("member-edit", args=[membership_pk])),
        ("post", reverse("member-edit", args=[membership_pk])),
        ("get", reverse("member-remove", args=[membership_pk])),
        ("post", reverse("member-remove", args=[membership_pk])),
    ]


@pytest.mark.parametrize("roles", [(), (DM,), (IOT,), (DM, IOT)])
def test_non_administrators_get_403_everywhere(login, org, admin_user, roles):
    user = make_member(org, roles)
    client = login(user)
    target = membership_of(admin_user, org)
    for method, url in member_urls(target.pk):
        response = getattr(client, method)(url, {"roles": [DM]} if method == "post" else None)
        assert response.status_code == 403, (method, url)
    assert membership_of(admin_user, org).roles == {ADMIN}
    assert not AuditEntry.objects.exists()


def test_anonymous_is_sent_to_login(client, org, admin_user):
    response = client.get(reverse("members"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_another_organizations_membership_is_404(login, org, other_org, admin_user):
    stranger = make_member(other_org, [ADMIN])
    foreign = membership_of(stranger, other_org)
    client = login(admin_user)
    for method, url in member_urls(foreign.pk)[3:]:
        response = getattr(client, method)(url, {"roles": []} if method == "post" else None)
        assert response.status_code == 404, (method, url)
    assert membership_of(stranger, other_org).roles == {ADMIN}
    assert not AuditEntry.objects.exists()


def test_admin_of_one_org_only_cannot_manage_the_other(login, org, other_org):
    """Administrator in Acme but plain member in Globex: Globex's member pages are 403."""
    user = make_member(org, [ADMIN])
    make_membership(user, other_org, [DM])
    client = login(user)
    client.post(reverse("switch-organization"), {"organization": other_org.pk})
    assert client.get(reverse("members")).status_code == 403


# --- the list -------------------------------------------------------------------


def test_list_shows_members_with_role_groups_of_this_organization_only(
    login, org, other_org, admin_user
):
    make_member(org, [DM, IOT], username="bob")
    make_member(org, [], username="carol")
    make_member(other_org, [ADMIN], username="mallory")
    response = login(admin_user).get(reverse("members"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "alice" in html and "bob" in html and "carol" in html
    assert "mallory" not in html
    assert "Device Manager, IoT Manager" in html
    assert "No role group (view only)" in html
    assert [m.user.username for m in response.context["memberships"]] == ["alice", "bob", "carol"]


def test_list_query_count_does_not_grow_with_members(login, org, admin_user):
    client = login(admin_user)
    make_member(org, [DM])
    client.get(reverse("members"))  # warm up
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("members"))
    for _ in range(10):
        make_member(org, [IOT])
    with CaptureQueriesContext(connection) as many:
        client.get(reverse("members"))
    assert len(many) == len(few)


# --- adding -------------------------------------------------------------------


def invite(client, username, roles=()):
    return client.post(
        reverse("member-add"),
        {"mode": "invite", "invite-username": username, "invite-roles": list(roles)},
    )


def test_adding_an_existing_account_is_an_invitation_it_must_accept(
    login, client, org, other_org, admin_user
):
    bob = make_member(other_org, [ADMIN], username="bob")
    response = invite(login(admin_user), "bob", [DM, IOT])
    assert response.status_code == 302 and response["Location"] == reverse("members")
    # Nothing changes for bob until he says so.
    assert not Membership.objects.filter(user=bob, organization=org).exists()
    invitation = Invitation.objects.get()
    assert invitation.username == "bob" and sorted(invitation.roles) == sorted([DM, IOT])
    entry = AuditEntry.objects.get()
    assert entry.organization == org and entry.user == admin_user
    assert entry.action == "member.invite" and entry.object_ids == [invitation.pk]
    # bob sees it on his Invitations page and accepts.
    client.logout()
    bob_client = login(bob)
    page = bob_client.get(reverse("invitations"))
    assert "Acme" in page.content.decode()
    bob_client.post(reverse("invitations"), {"invitation": invitation.pk, "answer": "accept"})
    assert membership_of(bob, org).roles == {DM, IOT}
    joined = AuditEntry.objects.get(action="member.join")
    assert joined.organization == org and joined.user == bob
    assert joined.detail["invited_by"] == "alice"
    # His default organization is still his first one.
    assert bob_client.get(reverse("dashboard")).context["current_organization"] == other_org


def test_the_invitation_answer_never_tells_whether_a_username_exists(login, org, admin_user):
    make_user("bob")
    client = login(admin_user)
    answers = []
    for username in ("bob", "nobody-by-this-name"):
        response = invite(client, username, [DM])
        follow = client.get(response["Location"])
        text = [str(m) for m in follow.context["messages"]]
        answers.append((response.status_code, [t.replace(username, "NAME") for t in text]))
    assert answers[0] == answers[1]
    assert Invitation.objects.count() == 2


def test_only_the_named_account_can_accept_and_it_expires_and_can_be_withdrawn(
    login, client, org, admin_user
):
    bob, mallory = make_user("bob"), make_user("mallory")
    invite(login(admin_user), "bob")
    invitation = Invitation.objects.get()
    client.logout()
    login(mallory).post(reverse("invitations"), {"invitation": invitation.pk, "answer": "accept"})
    assert not Membership.objects.filter(user=mallory, organization=org).exists()
    client.logout()
    # Withdrawn: bob can no longer accept.
    login(admin_user).post(reverse("invitation-revoke", args=[invitation.pk]))
    assert AuditEntry.objects.filter(action="member.invite_revoke").count() == 1
    client.logout()
    login(bob).post(reverse("invitations"), {"invitation": invitation.pk, "answer": "accept"})
    assert not Membership.objects.filter(user=bob, organization=org).exists()
    # Expired: the same.
    client.logout()
    invite(login(admin_user), "bob")
    late = Invitation.objects.pending().get()
    Invitation.objects.filter(pk=late.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    client.logout()
    login(bob).post(reverse("invitations"), {"invitation": late.pk, "answer": "accept"})
    assert not Membership.objects.filter(user=bob, organization=org).exists()


def test_the_support_superuser_cannot_join_by_invitation(login, client, org, admin_user):
    support = make_user("support", is_staff=True, is_superuser=True)
    invite(login(admin_user), "support", [ADMIN])
    invitation = Invitation.objects.get()
    client.logout()
    client.force_login(support)
    client.post(reverse("invitations"), {"invitation": invitation.pk, "answer": "accept"})
    assert not Membership.objects.filter(user=support).exists()


def test_declining_is_audited_and_ends_the_invitation(login, client, org, admin_user):
    bob = make_user("bob")
    invite(login(admin_user), "bob")
    invitation = Invitation.objects.get()
    client.logout()
    login(bob).post(reverse("invitations"), {"invitation": invitation.pk, "answer": "decline"})
    assert not Invitation.objects.pending().exists()
    assert AuditEntry.objects.filter(action="member.invite_decline", user=bob).exists()


@pytest.mark.parametrize(
    "username, message",
    [
        ("alice", "already a member"),
        ("", "This field is required"),
        ("x" * 500, "at most 150 characters"),
    ],
)
def test_invitation_refusals_are_field_errors(login, org, admin_user, username, message):
    response = invite(login(admin_user), username)
    assert response.status_code == 200
    errors = field_errors(response, "invite_form", "username")
    assert any(message in e for e in errors), errors
    assert 'class="form-errors"' in response.content.decode()
    assert not Invitation.objects.exists()
    assert not AuditEntry.objects.exists()


def new_user_data(**overrides):
    data = {
        "mode": "new",
        "new-username": "dave",
        "new-email": "dave@example.com",
        "new-password1": "tangerine-bicycle-orbit",
        "new-password2": "tangerine-bicycle-orbit",
        "new-roles": [ADMIN],
    }
    data.update(overrides)
    return data


def test_create_new_user_as_member(login, org, admin_user, client):
    response = login(admin_user).post(reverse("member-add"), new_user_data())
    assert response.status_code == 302
    dave = User.objects.get(username="dave")
    assert dave.email == "dave@example.com"
    assert not dave.is_staff and not dave.is_superuser
    assert membership_of(dave, org).roles == {ADMIN}
    entry = AuditEntry.objects.get()
    assert entry.action == "member.add" and entry.detail["created_user"] is True
    client.logout()
    assert client.login(username="dave", password="tangerine-bicycle-orbit")


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"new-password1": "password", "new-password2": "password"}, "password2", "too common"),
        ({"new-password1": "x7#", "new-password2": "x7#"}, "password2", "too short"),
        (
            {"new-password1": "dave@example.com1", "new-password2": "dave@example.com1"},
            "password2",
            "too similar",
        ),
        ({"new-password2": "something-else-entirely"}, "password2", "didn’t match"),
        ({"new-email": ""}, "email", "required"),
        ({"new-email": "not-an-email"}, "email", "valid email"),
        ({"new-username": "ALICE"}, "username", "already exists"),
        ({"new-username": "bad name!"}, "username", "valid username"),
        ({"new-roles": ["superuser"]}, "roles", "not one of the available choices"),
    ],
)
def test_create_new_user_refusals_are_field_errors(
    login, org, admin_user, overrides, field, message
):
    response = login(admin_user).post(reverse("member-add"), new_user_data(**overrides))
    assert response.status_code == 200
    errors = field_errors(response, "new_form", field)
    assert any(message in e for e in errors), errors
    assert User.objects.count() == 1
    assert not AuditEntry.objects.exists()


def test_garbage_post_to_add_is_a_form_error_not_a_500(login, org, admin_user):
    response = login(admin_user).post(reverse("member-add"), {"mode": "💥", "junk": "1"})
    assert response.status_code == 200
    assert response.context["invite_form"].errors


# --- editing role groups -----------------------------------------------------------


def test_edit_role_groups(login, org, admin_user):
    bob = make_member(org, [DM], username="bob")
    membership = membership_of(bob, org)
    client = login(admin_user)
    page = client.get(reverse("member-edit", args=[membership.pk]))
    assert page.status_code == 200
    assert page.context["form"].initial == {"roles": [DM]}
    response = client.post(reverse("member-edit", args=[membership.pk]), {"roles": [IOT, ADMIN]})
    assert response.status_code == 302 and response["Location"] == reverse("members")
    assert membership_of(bob, org).roles == {IOT, ADMIN}
    entry = AuditEntry.objects.get()
    assert entry.action == "member.change_roles" and entry.object_ids == [membership.pk]
    assert entry.detail == {"username": "bob", "before": [DM], "after": [ADMIN, IOT]}


def test_edit_without_change_writes_no_audit_entry(login, org, admin_user):
    membership = membership_of(make_member(org, [DM]), org)
    login(admin_user).post(reverse("member-edit", args=[membership.pk]), {"roles": [DM]})
    assert not AuditEntry.objects.exists()


def test_edit_rejects_unknown_role(login, org, admin_user):
    membership = membership_of(make_member(org, [DM]), org)
    response = login(admin_user).post(
        reverse("member-edit", args=[membership.pk]), {"roles": ["root"]}
    )
    assert response.status_code == 200
    assert response.context["form"].errors["roles"]
    assert membership_of(membership.user, org).roles == {DM}


def test_last_administrator_cannot_drop_own_administrator_role(login, org, admin_user):
    make_member(org, [DM, IOT])  # others exist, but none is an Administrator
    membership = membership_of(admin_user, org)
    response = login(admin_user).post(reverse("member-edit", args=[membership.pk]), {"roles": [DM]})
    assert response.status_code == 200
    errors = response.context["form"].errors["roles"]
    assert "You are the last Administrator of Acme" in errors[0]
    assert "form-errors" in response.content.decode()
    assert membership_of(admin_user, org).roles == {ADMIN}
    assert not AuditEntry.objects.exists()


def test_administrator_may_drop_own_role_when_another_remains(login, org, admin_user):
    make_member(org, [ADMIN])
    membership = membership_of(admin_user, org)
    client = login(admin_user)
    response = client.post(reverse("member-edit", args=[membership.pk]), {"roles": [DM]})
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")  # the member pages are no longer theirs
    assert membership_of(admin_user, org).roles == {DM}
    assert client.get(reverse("members")).status_code == 403


# --- removing ---------------------------------------------------------------------


def test_remove_member_after_confirmation(login, org, admin_user):
    bob = make_member(org, [DM], username="bob")
    membership = membership_of(bob, org)
    client = login(admin_user)
    page = client.get(reverse("member-remove", args=[membership.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Remove bob?" in html and 'class="danger"' in html
    assert Membership.objects.filter(pk=membership.pk).exists()  # GET changes nothing

    response = client.post(reverse("member-remove", args=[membership.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("members")
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert User.objects.filter(pk=bob.pk).exists()  # the account stays
    entry = AuditEntry.objects.get()
    assert entry.action == "member.remove" and entry.object_ids == [membership.pk]
    assert entry.detail == {"username": "bob", "roles": [DM]}


def test_last_administrator_cannot_remove_themselves(login, org, admin_user):
    make_member(org, [DM])
    membership = membership_of(admin_user, org)
    client = login(admin_user)
    page = client.get(reverse("member-remove", args=[membership.pk]))
    assert "cannot remove yourself" in page.content.decode()
    assert "Remove member</button>" not in page.content.decode()

    response = client.post(reverse("member-remove", args=[membership.pk]))
    assert response.status_code == 200
    assert "cannot remove yourself" in response.context["form"].non_field_errors()[0]
    assert Membership.objects.filter(pk=membership.pk).exists()
    assert not AuditEntry.objects.exists()


def test_administrator_may_leave_when_another_administrator_remains(login, org, admin_user):
    make_member(org, [ADMIN])
    membership = membership_of(admin_user, org)
    response = login(admin_user).post(reverse("member-remove", args=[membership.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEntry.objects.get().action == "member.remove"


def test_administrator_may_remove_another_administrator(login, org, admin_user):
    other_admin = membership_of(make_member(org, [ADMIN]), org)
    response = login(admin_user).post(reverse("member-remove", args=[other_admin.pk]))
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=other_admin.pk).exists()


# --- switching organizations ---------------------------------------------------------


def test_user_in_two_organizations_switches_between_them(login, org, other_org):
    user = make_member(org, [ADMIN], username="dana")
    make_membership(user, other_org, [ADMIN])
    make_member(org, [], username="acme-only")
    make_member(other_org, [], username="globex-only")
    client = login(user)

    first = client.get(reverse("members")).content.decode()
    assert "Members of Acme" in first and "acme-only" in first and "globex-only" not in first

    response = client.post(
        reverse("switch-organization"), {"organization": other_org.pk, "next": reverse("members")}
    )
    assert response.status_code == 302 and response["Location"] == reverse("members")
    after = client.get(reverse("members"))
    html = after.content.decode()
    assert after.context["current_organization"] == other_org
    assert "Members of Globex" in html and "globex-only" in html and "acme-only" not in html
    assert f'<option value="{other_org.pk}" selected>Globex</option>' in html


@pytest.mark.parametrize("value", ["not-a-number", ""])
def test_switching_to_garbage_is_400(login, org, value):
    client = login(make_member(org, [ADMIN]))
    assert client.post(reverse("switch-organization"), {"organization": value}).status_code == 400


def test_switching_to_an_organization_you_are_not_in_is_400(login, org, other_org):
    user = make_member(org, [ADMIN])
    make_member(other_org, [], username="globex-only")
    client = login(user)
    response = client.post(reverse("switch-organization"), {"organization": other_org.pk})
    assert response.status_code == 400
    page = client.get(reverse("members"))
    assert page.context["current_organization"] == org
    assert "globex-only" not in page.content.decode()


def test_switching_ignores_an_offsite_next(login, org, other_org):
    user = make_member(org, [ADMIN])
    make_membership(user, other_org, [ADMIN])
    response = login(user).post(
        reverse("switch-organization"),
        {"organization": other_org.pk, "next": "https://evil.example/"},
    )
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")


def test_another_organizations_admin_cannot_withdraw_an_invitation(
    login, client, org, other_org, admin_user
):
    invite(login(admin_user), "bob")
    invitation = Invitation.objects.get()
    client.logout()
    stranger = login(make_member(other_org, [ADMIN], username="eve"))
    assert stranger.post(reverse("invitation-revoke", args=[invitation.pk])).status_code == 404
    assert Invitation.objects.pending().filter(pk=invitation.pk).exists()


def test_the_dashboard_tells_of_open_invitations(login, client, org, other_org, admin_user):
    bob = make_member(other_org, username="bob")
    invite(login(admin_user), "bob")
    client.logout()
    page = login(bob).get(reverse("dashboard")).content.decode()
    assert "1 open invitation" in page and reverse("invitations") in page
