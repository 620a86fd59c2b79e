"""Organization scoping, the current-organization middleware, and the production guard."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory

from devices.models import Device, DeviceGroup, Gateway
from portal import tenancy
from portal.settings import env_bool
from tests.factories import (
    make_device,
    make_device_type,
    make_gateway,
    make_group,
    make_member,
    make_membership,
    make_organization,
    make_user,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
OTHER_PUBLIC_KEY = "s+YOfH0I0fS6EPaXANSytmOyI++NW7vW4Pi2als/RQc="  # a vendor key (not the demo one)


# --- querysets ---------------------------------------------------------------------


@pytest.fixture
def two_orgs():
    """Two organizations with one device, gateway and group each."""
    device_type = make_device_type()
    orgs = [make_organization("Alpha"), make_organization("Bravo")]
    for org in orgs:
        make_device(org, device_type, gateway=make_gateway(org))
        make_group(org, "Lobby")
    return orgs


@pytest.mark.django_db
@pytest.mark.parametrize("model", [Device, Gateway, DeviceGroup])
def test_for_organization_scopes_to_that_organization(two_orgs, model):
    alpha, bravo = two_orgs
    assert {row.organization for row in model.objects.for_organization(alpha)} == {alpha}
    assert model.objects.for_organization(alpha).count() == 1
    assert model.objects.for_organization(bravo).get().organization == bravo


@pytest.mark.django_db
@pytest.mark.parametrize("model", [Device, Gateway, DeviceGroup])
def test_for_organization_none_is_empty_without_a_query(two_orgs, model, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert list(model.objects.for_organization(None)) == []


@pytest.mark.django_db
@pytest.mark.parametrize("model", [Device, Gateway, DeviceGroup])
def test_for_user_sees_only_member_organizations(two_orgs, model):
    alpha, bravo = two_orgs
    in_alpha = make_member(alpha, ["administrator"])
    in_both = make_member(alpha)
    make_membership(in_both, bravo, ["device_manager"])
    in_none = make_user()

    assert {r.organization for r in model.objects.for_user(in_alpha)} == {alpha}
    both = list(model.objects.for_user(in_both))
    assert {r.organization for r in both} == {alpha, bravo}
    assert len(both) == 2  # one row each, not duplicated by the membership join
    assert not model.objects.for_user(in_none).exists()
    assert not model.objects.for_user(AnonymousUser()).exists()


@pytest.mark.django_db
def test_for_user_superuser_sees_everything(two_orgs):
    root = make_user(is_superuser=True, is_staff=True)  # member of nothing
    assert Device.objects.for_user(root).count() == 2
    assert Gateway.objects.for_user(root).count() == 2


@pytest.mark.django_db
def test_for_user_composes_with_other_filters(two_orgs):
    alpha, _ = two_orgs
    user = make_member(alpha)
    assert Device.objects.filter(state="discovered").for_user(user).count() == 1
    assert Device.objects.filter(state="failed").for_user(user).count() == 0


# --- middleware --------------------------------------------------------------------


def _request(user, chosen=None):
    request = RequestFactory().get("/")
    request.user = user
    request.session = SessionStore()
    if chosen is not None:
        request.session[tenancy.SESSION_KEY] = chosen
    return request


def _through_middleware(request):
    seen = {}

    def get_response(req):
        seen["request"] = req
        return "response"

    assert tenancy.CurrentOrganizationMiddleware(get_response)(request) == "response"
    return seen["request"]


@pytest.mark.django_db
def test_middleware_for_anonymous():
    request = _through_middleware(_request(AnonymousUser()))
    assert request.all_memberships == []
    assert request.membership is None and request.organization is None
    assert tenancy.roles_of(request) == frozenset()


@pytest.mark.django_db
def test_middleware_for_a_user_of_no_organization():
    request = _through_middleware(_request(make_user()))
    assert request.membership is None and request.organization is None


@pytest.mark.django_db
def test_middleware_picks_the_oldest_membership_so_joining_never_moves_it():
    zulu, alpha = make_organization("Zulu"), make_organization("Alpha")
    user = make_user()
    make_membership(user, zulu, ["administrator"])
    make_membership(user, alpha, ["iot_manager"])  # joined later, first by name
    request = _through_middleware(_request(user))
    assert [m.organization for m in request.all_memberships] == [alpha, zulu]
    assert request.organization == zulu
    assert tenancy.roles_of(request) == {"administrator"}


@pytest.mark.django_db
def test_middleware_picks_the_session_choice():
    alpha, zulu = make_organization("Alpha"), make_organization("Zulu")
    user = make_user()
    make_membership(user, alpha)
    make_membership(user, zulu, ["device_manager"])
    request = _through_middleware(_request(user, chosen=zulu.pk))
    assert request.organization == zulu
    assert request.membership.organization_id == zulu.pk
    assert tenancy.roles_of(request) == {"device_manager"}


@pytest.mark.django_db
def test_middleware_ignores_a_stale_or_foreign_choice():
    alpha, foreign = make_organization("Alpha"), make_organization("Foreign")
    user = make_member(alpha)
    make_member(foreign)
    request = _through_middleware(_request(user, chosen=foreign.pk))
    assert request.organization == alpha


@pytest.mark.django_db
def test_middleware_costs_one_query(django_assert_num_queries):
    user = make_user()
    for name in ("A", "B", "C"):
        make_membership(user, make_organization(name))
    request = _request(user)
    with django_assert_num_queries(1):
        request = _through_middleware(request)
        assert [m.organization.name for m in request.all_memberships] == ["A", "B", "C"]


# --- switching organization --------------------------------------------------------


@pytest.mark.django_db
def test_switch_to_own_organization_is_remembered():
    alpha, bravo = make_organization("Alpha"), make_organization("Bravo")
    user = make_member(alpha)
    make_membership(user, bravo)
    request = _through_middleware(_request(user))
    assert request.organization == alpha

    assert tenancy.switch_organization(request, bravo.pk) is True
    assert request.session[tenancy.SESSION_KEY] == bravo.pk
    request.session.save()

    follow_up = _request(user)
    follow_up.session = SessionStore(session_key=request.session.session_key)
    assert _through_middleware(follow_up).organization == bravo


@pytest.mark.django_db
def test_switch_to_foreign_organization_is_refused():
    alpha, foreign = make_organization("Alpha"), make_organization("Foreign")
    user = make_member(alpha)
    make_member(foreign)
    request = _through_middleware(_request(user, chosen=alpha.pk))
    assert tenancy.switch_organization(request, foreign.pk) is False
    assert request.session[tenancy.SESSION_KEY] == alpha.pk
    assert tenancy.switch_organization(request, 10**9) is False


@pytest.mark.django_db
def test_switch_for_anonymous_is_refused():
    request = _through_middleware(_request(AnonymousUser()))
    assert tenancy.switch_organization(request, 1) is False
    assert tenancy.SESSION_KEY not in request.session


@pytest.mark.django_db
def test_organization_context():
    alpha = make_organization("Alpha")
    user = make_member(alpha, ["device_manager", "iot_manager"])
    request = _through_middleware(_request(user))
    context = tenancy.organization_context(request)
    assert context["current_organization"] == alpha
    assert context["can"]["enroll"] is True and context["can"]["manage_members"] is False
    assert tenancy.organization_context(_through_middleware(_request(AnonymousUser()))) == {}


# --- settings: refuse to start in production mode with the demo key ----------------


def _manage_check(tmp_path, **env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    clean.update(DJANGO_SETTINGS_MODULE="portal.settings", FLEETGATE_VAR_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO_ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_refuses_to_start_with_debug_off_and_the_demo_key(tmp_path):
    result = _manage_check(tmp_path, DEBUG="0")
    assert result.returncode != 0
    assert "Refusing to start" in result.stdout + result.stderr
    assert "SECRET_KEY" in result.stderr


def test_starts_with_debug_off_and_a_real_key(tmp_path):
    result = _manage_check(
        tmp_path,
        DEBUG="0",
        SECRET_KEY="x" * 20 + "-something-long-and-random",
        LICENSE_PUBLIC_KEY=OTHER_PUBLIC_KEY,
    )
    assert result.returncode == 0, result.stderr
    assert "Refusing" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("off", False),
        ("", False),
        ("maybe", False),  # anything unclear means off: the safe direction
    ],
)
def test_env_bool(monkeypatch, value, expected):
    monkeypatch.setenv("FLEETGATE_TEST_FLAG", value)
    assert env_bool("FLEETGATE_TEST_FLAG", not expected) is expected


def test_env_bool_default(monkeypatch):
    monkeypatch.delenv("FLEETGATE_TEST_FLAG", raising=False)
    assert env_bool("FLEETGATE_TEST_FLAG", True) is True
    assert env_bool("FLEETGATE_TEST_FLAG", False) is False
