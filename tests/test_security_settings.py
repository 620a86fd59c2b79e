"""Production defaults, headers, credentials, names and forms (issue 10, points 9, 10, 15,
16 and the 2.5 MB pasted list of 17)."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse
from django.views.debug import technical_500_response

from devices.models import DeviceGroup, Gateway
from enrollment import batch
from portal.choices import Role
from portal.models import Organization
from portal.redaction import redact
from portal.validators import invisible_characters, validate_name
from tests.factories import make_device_type, make_gateway, make_member, make_organization

REPO_ROOT = Path(__file__).resolve().parent.parent
VENDOR_KEY = "s+YOfH0I0fS6EPaXANSytmOyI++NW7vW4Pi2als/RQc="  # not the demo key
SECRET = "x" * 20 + "-something-long-and-random-enough-for-the-deploy-check"
# The production settings docs/security.md documents.
PRODUCTION = {
    "SECRET_KEY": SECRET,
    "LICENSE_PUBLIC_KEY": VENDOR_KEY,
    "ALLOWED_HOSTS": "fleet.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://fleet.example.com",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO",
}


def manage(tmp_path, *args, **env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
        and k not in PRODUCTION
    }
    clean.update(DJANGO_SETTINGS_MODULE="portal.settings", FLEETGATE_VAR_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- points 9 and 10: production refuses demo keys; DEBUG is off by default ----------------


def test_debug_is_off_unless_the_environment_turns_it_on(tmp_path):
    result = manage(
        tmp_path,
        "shell",
        "-c",
        "from django.conf import settings; print(settings.DEBUG)",
        **{k: v for k, v in PRODUCTION.items() if k in ("SECRET_KEY", "LICENSE_PUBLIC_KEY")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_production_refuses_to_start_without_a_license_public_key(tmp_path):
    result = manage(tmp_path, "check", SECRET_KEY=SECRET)
    assert result.returncode != 0
    assert "Refusing to start" in result.stderr and "LICENSE_PUBLIC_KEY" in result.stderr


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


PASSWORD = "pA55-w0rd-that-must-not-show"
URL = f"postgres://fleetgate:{PASSWORD}@db.internal:5432/fleetgate"


def test_redact_masks_the_password_of_every_connection_url():
    text = f"{URL} redis://:{PASSWORD}@cache:6379/0 mqtts://bridge:{PASSWORD}@broker:8883"
    assert PASSWORD not in redact(text)
    assert "postgres://fleetgate:••••@db.internal:5432/fleetgate" in redact(text)
    assert redact("redis://127.0.0.1:6379/4 http://example.com:80/a@b") == (
        "redis://127.0.0.1:6379/4 http://example.com:80/a@b"
    )


@override_settings(DEBUG=True)
def test_the_debug_page_never_shows_a_connection_password(rf=None):
    request = RequestFactory().get("/", DATABASE_URL=URL)
    database_url = URL  # a frame variable, as settings code would have  # noqa: F841
    try:
        raise ConnectionError(f"could not connect to {URL}")
    except ConnectionError:
        response = technical_500_response(request, *sys.exc_info())
    page = response.content.decode()
    assert "db.internal" in page and PASSWORD not in page


def test_log_records_never_carry_a_connection_password():
    handler = next(
        h
        for h in logging.getLogger().handlers
        if any(type(f).__name__ == "RedactingFilter" for f in h.filters)
    )
    logger = logging.getLogger("fleetgate.test")
    record = logger.makeRecord(
        "fleetgate.test", logging.ERROR, __file__, 1, "cannot reach %s", (URL,), None
    )
    try:
        raise ConnectionError(URL)
    except ConnectionError:
        record.exc_info = sys.exc_info()
    assert handler.filter(record)
    output = handler.format(record)
    assert "db.internal" in output and PASSWORD not in output


# --- point 15: headers ----------------------------------------------------------------------


@pytest.mark.django_db
def test_every_page_carries_a_content_security_policy_without_inline_allowances(login):
    org = make_organization()
    client = login(make_member(org, [Role.ADMINISTRATOR]))
    for url in (reverse("dashboard"), reverse("members"), reverse("login"), "/api/v1/docs/"):
        response = client.get(url)
        policy = response["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "object-src 'none'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        page = response.content.decode()
        # Every inline script or style carries the nonce; none uses an inline handler.
        # (A page with no inline code at all, like the API docs, gets no nonce.)
        assert page.count("<script>") == 0 and " onchange=" not in page and " onclick=" not in page
        assert page.count("<style>") == 0
        if "<script nonce" in page or "<style nonce" in page:
            nonce = policy.split("'nonce-")[1].split("'")[0]
            assert f'nonce="{nonce}"' in page


@pytest.mark.django_db
def test_redoc_gets_inline_styles_only(login):
    client = login(make_member(make_organization()))
    policy = client.get("/api/v1/redoc/")["Content-Security-Policy"]
    assert "style-src 'self' 'unsafe-inline'" in policy and "unsafe-eval" not in policy
    assert "script-src 'self'" in policy


@override_settings(SECURE_SSL_REDIRECT=True, SECURE_HSTS_SECONDS=31536000)
def test_https_settings_redirect_and_send_hsts(db):
    client = Client()
    assert client.get("/accounts/login/").status_code == 301
    secure = client.get("/accounts/login/", secure=True)
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")


# --- point 16: names, and pasted keys never echoed ------------------------------------------

SNEAKY = ["evil\u202egpj.exe", "gate\u200bway", "\u2066x\u2069", "a\ufeffb", "tab\there"]


@pytest.mark.parametrize("name", SNEAKY)
def test_the_name_validator_refuses_invisible_and_direction_characters(name):
    assert invisible_characters(name)
    with pytest.raises(Exception, match="invisible or text-direction"):
        validate_name(name)


def test_the_name_validator_keeps_every_script():
    for name in ("Zürich Süd", "東京 ゲートウェイ", "שער צפון", "Gateway (north) #2 — ✓"):
        validate_name(name)


@pytest.mark.django_db
@pytest.mark.parametrize("model", [Organization, Gateway, DeviceGroup], ids=lambda m: m.__name__)
def test_every_name_field_carries_the_validator(model):
    field = model._meta.get_field("name")
    assert validate_name in field.validators


@pytest.mark.django_db
def test_forms_refuse_sneaky_names(login):
    org = make_organization()
    client = login(make_member(org, [Role.ADMINISTRATOR]))
    response = client.post(reverse("devices:group-create"), {"name": "North\u202e"})
    assert not DeviceGroup.objects.exists()
    assert "invisible or text-direction" in response.content.decode()
    gateway = make_gateway(org)
    sensor = make_device_type("Sensor")
    rows = f"SN-1,abcd,Sensor,{gateway.uid},Boiler\u200broom\n"
    response = client.post(
        reverse("enrollment:batch-new"),
        {"file": SimpleUploadedFile("list.csv", rows.encode()), "device_type": sensor.pk},
    )
    assert response.context["invalid_count"] == 1
    assert "invisible or text-direction" in str(response.context["invalid_rows"][0].reasons)


@pytest.mark.django_db
def test_a_refused_pasted_list_never_comes_back_into_the_page(login):
    org = make_organization()
    client = login(make_member(org, [Role.ADMINISTRATOR]))
    pasted = "serial,key,colour\nSN-1,TopSecretKey-1\n"  # an unknown column: refused
    response = client.post(reverse("enrollment:batch-new"), {"text": pasted})
    assert response.status_code == 400
    page = response.content.decode()
    assert "unknown columns" in page
    assert "TopSecretKey-1" not in page and "SN-1" not in page


# --- point 17 (part): a pasted list over 2.5 MB -----------------------------------------------


@pytest.mark.django_db
def test_a_pasted_list_over_the_form_limit_gets_the_forms_own_error(org_admin_client):
    client = org_admin_client
    client.get(reverse("enrollment:batch-new"))  # the CSRF cookie, as a browser has it
    big = "SN-000001,abcdefgh\n" * 150_000  # 2.85 MB of text
    response = client.post(
        reverse("enrollment:batch-new"),
        {"text": big, "csrfmiddlewaretoken": client.cookies["csrftoken"].value},
    )
    assert response.status_code == 413
    page = response.content.decode()
    assert "larger than 2.5 MB" in page and f"up to {batch.MAX_BYTES // 2**20} MB" in page
    assert 'id="batch-enrollment"' in page and "abcdefgh" not in page


@pytest.fixture
def org_admin_client(db):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_member(make_organization(), [Role.ADMINISTRATOR]))
    return client
