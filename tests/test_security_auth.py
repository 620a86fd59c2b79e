"""Login throttling and API tokens (issue 10, points 5 and 14)."""

import hashlib
import io
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from portal import tokens
from portal.models import ApiToken
from tests.factories import PASSWORD, make_member, make_organization, make_token

pytestmark = pytest.mark.django_db

DEVICES = reverse("api:device-list")
TOKEN_LOGIN = reverse("api:token-login")


@pytest.fixture
def user():
    return make_member(make_organization(slug="acme"), username="maria")


def portal_login(client, password):
    return client.post(reverse("login"), {"username": "maria", "password": password})


def admin_login(client, password):
    return client.post(reverse("admin:login"), {"username": "maria", "password": password})


def api_login(client, password):
    return client.post(TOKEN_LOGIN, {"username": "maria", "password": password}, format="json")


def logged_in(client, response, kind):
    if kind == "api":
        return response.status_code == 201
    return "_auth_user_id" in client.session


@pytest.mark.parametrize(
    ("kind", "attempt", "make_client"),
    [
        ("portal", portal_login, Client),
        ("admin", admin_login, Client),
        ("api", api_login, APIClient),
    ],
)
def test_a_hundred_wrong_passwords_lock_the_right_one_out_until_the_lockout_passes(
    user, kind, attempt, make_client
):
    if kind == "admin":
        user.is_staff = True
        user.save()
    client = make_client()
    for _ in range(100):
        assert attempt(client, "wrong-password").status_code in (200, 400, 429)
    response = attempt(client, PASSWORD)
    assert response.status_code == 429
    assert not logged_in(client, response, kind)
    text = response.content.decode()
    assert "Too many failed logins" in text and "15 minutes" in text
    # Once the lockout has passed, the right password works again.
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    response = attempt(client, PASSWORD)
    assert logged_in(client, response, kind), response.status_code


def test_the_lockout_is_per_username_and_address_and_lifted_by_the_command(user):
    client = Client()
    for _ in range(5):
        portal_login(client, "wrong-password")
    assert portal_login(client, PASSWORD).status_code == 429
    other_address = Client(REMOTE_ADDR="10.9.8.7")
    portal_login(other_address, PASSWORD)
    assert "_auth_user_id" in other_address.session
    call_command("axes_reset_username", "maria", stdout=io.StringIO())
    portal_login(client, PASSWORD)
    assert "_auth_user_id" in client.session


# --- tokens ---------------------------------------------------------------------------


def api(key, **headers):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get(DEVICES, headers=headers)


def test_tokens_are_stored_only_as_digests(user):
    key = make_token(user)
    token = ApiToken.objects.get(user=user)
    assert token.digest == hashlib.sha256(key.encode()).hexdigest()
    assert token.prefix == key[:10] and len(key) > 40
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM portal_apitoken")
        assert key not in repr(cursor.fetchall())
    assert api(key).status_code == 200


def test_an_expired_or_revoked_token_stops_working(user):
    expired = make_token(user)
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = api(expired)
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    revoked = make_token(user)
    assert api(revoked).status_code == 200
    assert tokens.revoke(user) == 1
    assert api(revoked).status_code == 401


def test_the_user_revokes_tokens_on_the_portal_page(user, login):
    client = login(user)
    page = client.post(reverse("api-tokens"), {"name": "installer app", "days": 30})
    key = page.context["new_key"]
    assert key.startswith("fg_") and key in page.content.decode()
    assert page["Cache-Control"].startswith("max-age=0")
    assert api(key).status_code == 200
    listed = client.get(reverse("api-tokens"))
    assert key not in listed.content.decode() and key[:10] in listed.content.decode()
    token = ApiToken.objects.get(user=user)
    assert (token.expires_at - timezone.now()).days in (29, 30)
    client.post(reverse("api-tokens"), {"revoke": token.pk})
    assert api(key).status_code == 401


def test_nobody_revokes_another_users_token(user, login):
    other = make_member(make_organization(), username="mallory")
    key = make_token(user)
    token = ApiToken.objects.get(user=user)
    login(other).post(reverse("api-tokens"), {"revoke": token.pk})
    assert api(key).status_code == 200


def test_the_api_token_command_issues_lists_and_revokes(user):
    out, err = io.StringIO(), io.StringIO()
    call_command("api_token", "maria", "--name", "script", "--days", "7", stdout=out, stderr=err)
    key = out.getvalue().strip()
    assert api(key).status_code == 200 and "shown only now" in err.getvalue()
    listing = io.StringIO()
    call_command("api_token", "maria", "--list", stdout=listing)
    assert key[:10] in listing.getvalue() and key not in listing.getvalue()
    call_command("api_token", "maria", "--revoke", "all", stdout=io.StringIO(), stderr=err)
    assert api(key).status_code == 401
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="No user named"):
        call_command("api_token", "nobody")


def test_the_token_login_endpoint_issues_a_token(user):
    response = api_login(APIClient(), PASSWORD)
    assert response.status_code == 201
    assert api(response.json()["token"]).status_code == 200
    wrong = api_login(APIClient(), "nope")
    assert wrong.status_code == 400 and wrong.json() == {"detail": "Wrong username or password."}


def test_plaintext_tokens_of_before_are_moved_to_digests_and_keep_working(user):
    """The data migration, run against a table shaped like DRF's authtoken_token."""
    from importlib import import_module

    from django.apps import apps

    migration = import_module("portal.migrations.0004_move_plaintext_api_tokens")
    old_key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            'CREATE TABLE authtoken_token ("key" varchar(40) PRIMARY KEY, '
            "user_id integer NOT NULL, created timestamp NULL)"
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, %s, NULL)", [old_key, user.pk])

    class Editor:  # what the migration uses of a schema editor
        def __init__(self, connection):
            self.connection = connection

        def execute(self, sql):
            with connection.cursor() as cursor:
                cursor.execute(sql)

    migration.move_tokens(apps, Editor(connection))
    assert "authtoken_token" not in connection.introspection.table_names()
    assert api(old_key).status_code == 200
    assert ApiToken.objects.get().expires_at > timezone.now() + timedelta(days=80)
