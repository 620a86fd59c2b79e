"""Batch enrollment: the parser and checks, the preview → commit pages, the errors CSV,
the role rule, all-or-nothing commits and ``manage.py enroll_import``."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from devices.choices import DeviceState
from devices.models import Device, Operation
from enrollment import batch, services
from enrollment.choices import EnrollmentStatus
from enrollment.models import EnrollmentBatch, EnrollmentRecord
from portal.choices import Role
from tests.factories import (
    make_device,
    make_device_type,
    make_gateway,
    make_license,
    make_member,
    make_organization,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def sensor():
    return make_device_type("Sensor")


@pytest.fixture
def gateway(org):
    return make_gateway(org, uid="gw-a")


def lines(*rows, sep=","):
    return "\n".join(sep.join(r) for r in rows) + "\n"


def checked(org, text, **defaults):
    return batch.check(org, batch.parse(text), **defaults)


# -- parsing ------------------------------------------------------------------------------


def test_comma_list_without_header():
    parsed = batch.parse("SN1,abcd\nSN2,efgh,Sensor,gw-a,Lamp,Hall\n")
    assert not parsed.header and parsed.delimiter == ","
    assert [r.number for r in parsed.rows] == [1, 2]
    assert parsed.rows[1].values == {
        "serial": "SN2",
        "key": "efgh",
        "type": "Sensor",
        "gateway": "gw-a",
        "name": "Lamp",
        "location": "Hall",
    }


def test_utf8_bom_tabs_and_header_with_aliases_in_any_order():
    data = "\ufeffAccess Key\tSerial Number\tDevice type\nabcd\tSN1\tSensor\n"
    parsed = batch.parse(data.encode("utf-8"))
    assert parsed.header and parsed.delimiter == "\t"
    assert parsed.rows[0].number == 2
    assert parsed.rows[0].values == {"serial": "SN1", "key": "abcd", "type": "Sensor"}


def test_semicolons_and_excel_sep_line():
    assert batch.parse("SN1;abcd;Sensor\n").rows[0].values["type"] == "Sensor"
    parsed = batch.parse("sep=;\nserial;key\nSN1;ab,cd\n")
    assert parsed.header and parsed.rows[0].values == {"serial": "SN1", "key": "ab,cd"}
    assert parsed.rows[0].number == 3


def test_blank_lines_keep_row_numbers_and_quotes_work():
    parsed = batch.parse('serial,key,name\n\nSN1,abcd,"Lamp, east"\n,,\nSN2,efgh\n')
    assert [r.number for r in parsed.rows] == [3, 5]
    assert parsed.rows[0].values["name"] == "Lamp, east"


def test_a_first_row_is_a_header_when_it_names_columns():
    assert not batch.parse("SN,abcd\n").header  # "sn" is a serial column's name, alone
    assert batch.parse("sn,code\n").header
    with pytest.raises(batch.BatchError, match="no key column"):
        batch.parse("serial,name\nSN1,Lamp\n")


def test_extra_and_missing_columns_are_row_errors():
    parsed = batch.parse("SN1\nSN2,abcd,T,gw,n,l,extra\nSN3,abcd,,,,,\n")
    assert "serial and a key" in parsed.rows[0].reasons[0]
    assert "7 columns; at most 6" in parsed.rows[1].reasons[0]
    assert parsed.rows[2].reasons == []  # trailing empty cells are no extra columns
    with_header = batch.parse("serial,key\nSN1,abcd,oops\n")
    assert "the header names 2" in with_header.rows[0].reason


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"serial,key\nSN1,abcd\nSN2,caf\xe9\n", "byte 0xE9 on row 3"),
        ("serial,key\nSN1,abcd\n".encode("utf-16"), "UTF-16"),
        (b"serial,key,colour\nSN1,abcd,red\n", "unknown columns: 'colour'"),
        (b"serial,name\nSN1,Lamp\n", "no key column"),
        (b"serial,key,sn\nSN1,abcd,x\n", "twice"),
        (b'SN1,abcd\nSN2,"ab\n', "Row 2 cannot be read"),
        (b"x" * (batch.MAX_BYTES + 1), "larger than 10 MB"),
    ],
)
def test_whole_file_errors(data, message):
    with pytest.raises(batch.BatchError, match=message):
        batch.parse(data)


def test_row_limit_counts_data_rows_not_the_header():
    rows = [("serial", "key")] + [(f"SN{n}", "abcd") for n in range(batch.MAX_ROWS)]
    assert len(batch.parse(lines(*rows)).rows) == batch.MAX_ROWS
    with pytest.raises(batch.BatchError, match="more than 10,000 rows"):
        batch.parse(lines(*rows, ("SN-last", "abcd")))


def test_pasted_text_over_the_byte_limit():
    with pytest.raises(batch.BatchError, match="larger than"):
        batch.parse("é" * (batch.MAX_BYTES // 2 + 1))


# -- checking -----------------------------------------------------------------------------


def test_every_row_checked_with_its_reason(org, sensor, gateway):
    make_device(org, device_type=sensor, serial_number="OLD1", state=DeviceState.PROVISIONED)
    EnrollmentRecord.objects.create(
        organization=org, serial_number="OPEN1", access_key="abcd", device_type=sensor
    )
    result = checked(
        org,
        lines(
            ("serial", "key", "type", "gateway"),
            ("SN1", "abcd", "sensor", "gw-a"),  # 2 ok (type names case-insensitive)
            ("SN1", "efgh", "", ""),  # 3 duplicate
            ("OLD1", "abcd", "", ""),  # 4 enrolled
            ("OPEN1", "abcd", "", ""),  # 5 pending
            ("SN 5", "ab", "", ""),  # 6 format
            ("SN6", "abcd", "Toaster", "gw-x"),  # 7 unknown type and gateway
            ("SN7", "abcd", "", ""),  # 8 ok, defaults
        ),
        device_type=sensor,
    )
    reasons = {r.number: r.reason for r in result.rows}
    assert reasons[2] == reasons[8] == ""
    assert reasons[3] == "Serial SN1 is already on row 2."
    assert reasons[4] == services.ALREADY_ENROLLED
    assert reasons[5] == services.ALREADY_REQUESTED
    assert "serial number" in reasons[6] and "access key" in reasons[6]
    assert "Unknown device type “Toaster”" in reasons[7] and "gw-x" in reasons[7]
    assert result.valid[0].fields["gateway"] == gateway
    assert result.valid[1].fields == {
        "serial_number": "SN7",
        "access_key": "abcd",
        "device_type": sensor,
        "gateway": None,
        "name": "",
        "location_note": "",
    }
    assert result.through_gateways == 1


def test_no_type_and_no_default(org):
    (row,) = checked(org, "SN1,abcd\n").rows
    assert "No device type" in row.reason


def test_another_organizations_gateway_is_unknown(org, sensor):
    make_gateway(make_organization(), uid="gw-foreign")
    (row,) = checked(org, "SN1,abcd,Sensor,gw-foreign\n").rows
    assert "Unknown gateway" in row.reason


def test_queries_do_not_depend_on_the_number_of_rows(org, sensor, gateway):
    def count(n):
        text = lines(*((f"SN{i}", "abcd", "Sensor", "gw-a") for i in range(n)))
        parsed = batch.parse(text)
        with CaptureQueriesContext(connection) as ctx:
            result = batch.check(org, parsed)
        assert len(result.valid) == n
        return len(ctx.captured_queries)

    assert count(10) == count(1000) <= 4


def test_errors_csv_has_row_reason_and_columns_but_never_the_key(org, sensor):
    result = checked(
        org,
        "serial,key,name\nSN1,secret-key-1,Lamp\nSN1,secret-key-2,Lamp 2\n",
        device_type=sensor,
    )
    text = batch.errors_csv(result.invalid)
    assert "secret-key" not in text
    assert text.startswith("\ufeff")  # a BOM: spreadsheets read it as UTF-8
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert rows[0] == ["row", "reason", "serial", "key", "type", "gateway", "name", "location"]
    assert rows[1][:3] == ["3", "Serial SN1 is already on row 2.", "SN1"]
    assert rows[1][3] == "" and rows[1][6] == "Lamp 2"
    # Fixed (a key filled in), the download imports again as it is.
    rows[1][3], rows[1][2] = "new-key", "SN2"
    fixed = io.StringIO()
    csv.writer(fixed).writerows(rows)
    (row,) = checked(org, fixed.getvalue(), device_type=sensor).rows
    assert row.valid and row.fields["access_key"] == "new-key" and row.number == 2


# -- committing ---------------------------------------------------------------------------


def test_commit_stores_the_batch_and_a_record_per_valid_row(org, sensor):
    parsed = batch.parse("SN1,abcd\nSN2,efgh\nSN2,ijkl\nbad key,x\n")
    committed = batch.commit(org, None, parsed, source="list.csv", device_type=sensor)
    b = committed.batch
    assert (b.rows, b.accepted, b.rejected, b.source) == (4, 2, 2, "list.csv")
    records = EnrollmentRecord.objects.filter(batch=b).order_by("serial_number")
    assert [r.serial_number for r in records] == ["SN1", "SN2"]
    assert records[1].access_key == "efgh"  # the first of the duplicates wins
    assert all(r.status == EnrollmentStatus.PENDING for r in records)


def test_a_failure_mid_commit_leaves_nothing(org, sensor, monkeypatch):
    real_create = services.create

    def create_then_fail(*args, **kwargs):
        real_create(*args, **kwargs)
        raise IntegrityError("boom after bulk_create")

    monkeypatch.setattr(services, "create", create_then_fail)
    with pytest.raises(IntegrityError):
        batch.commit(org, None, batch.parse("SN1,abcd\nSN2,efgh\n"), source="x", device_type=sensor)
    assert not EnrollmentRecord.objects.exists()
    assert not EnrollmentBatch.objects.exists()


def test_nothing_valid_is_nothing_to_import(org, sensor):
    with pytest.raises(batch.NothingToImport):
        batch.commit(org, None, batch.parse("SN1,ab\n"), source="x", device_type=sensor)
    assert not EnrollmentBatch.objects.exists()


# -- the pages ----------------------------------------------------------------------------


@pytest.fixture
def admin_client(org, login):
    return login(make_member(org, [Role.ADMINISTRATOR]))


def upload(client, text, **fields):
    data = {"file": SimpleUploadedFile("devices.csv", text.encode()), **fields}
    return client.post(reverse("enrollment:batch-new"), data)


def token_of(response):
    return response.context["token"]


@pytest.mark.parametrize(
    ("roles", "status"),
    [
        ([Role.DEVICE_MANAGER], 403),
        ([Role.IOT_MANAGER], 403),
        ([], 403),
        ([Role.ADMINISTRATOR], 200),
        ([Role.DEVICE_MANAGER, Role.IOT_MANAGER], 200),
    ],
)
def test_role_rule(org, login, roles, status):
    client = login(make_member(org, roles))
    assert client.get(reverse("enrollment:batch-new")).status_code == status
    if status == 403:  # the server refuses every step, whatever the page showed
        assert client.post(reverse("enrollment:batch-new"), {"text": "SN1,abcd"}).status_code == 403
        assert client.post(reverse("enrollment:batch-commit"), {"token": "x"}).status_code == 403
        assert client.get(reverse("enrollment:batch-errors", args=["x"])).status_code == 403
    else:
        assert client.post(reverse("enrollment:batch-commit"), {"token": "x"}).status_code == 404


def test_form_page(admin_client, gateway):
    response = admin_client.get(reverse("enrollment:batch-new"))
    assert response.status_code == 200
    assert b"gw-a" in response.content or gateway.name.encode() in response.content


def test_preview_then_commit_then_errors_csv(org, sensor, gateway, admin_client):
    make_license(org, seats=10)
    make_device(org, device_type=sensor, serial_number="OLD1", state=DeviceState.PROVISIONED)
    text = lines(
        ("serial", "key", "gateway"),
        ("SN1", "KEY-ONE-1", "gw-a"),
        ("SN2", "KEY-TWO-2", ""),
        ("OLD1", "KEY-OLD-3", "gw-a"),
    )
    response = upload(admin_client, text, device_type=sensor.pk)
    assert response.status_code == 200
    page = response.content.decode()
    assert "KEY-" not in page  # keys never reach the page
    ctx = response.context
    assert (ctx["valid_count"], ctx["invalid_count"], ctx["through_gateways"]) == (2, 1, 1)
    assert "This device is enrolled already." in page and "SN1" in page
    assert not EnrollmentRecord.objects.exists()  # a preview stores nothing
    token = token_of(response)
    stored = admin_client.session[batch_views_key()]
    assert "KEY-ONE-1" not in str(stored)  # encrypted in the session

    preview_csv = admin_client.get(reverse("enrollment:batch-errors", args=[token]))
    assert preview_csv["Content-Type"].startswith("text/csv")
    body = preview_csv.getvalue().decode("utf-8-sig")
    assert "OLD1" in body and "KEY-" not in body

    response = admin_client.post(reverse("enrollment:batch-commit"), {"token": token})
    assert response.status_code == 200
    assert "KEY-" not in response.content.decode()
    assert "1 sent to their gateways" in response.context["sent"]
    assert "1 wait for the installer app" in response.context["sent"]
    records = {r.serial_number: r for r in EnrollmentRecord.objects.for_organization(org)}
    assert set(records) == {"SN1", "SN2"}
    assert records["SN1"].status == EnrollmentStatus.IN_PROGRESS
    assert records["SN2"].status == EnrollmentStatus.PENDING and records["SN2"].gateway is None
    assert Operation.objects.filter(device__serial_number="SN1").exists()
    b = EnrollmentBatch.objects.get()
    assert (b.rows, b.accepted, b.rejected) == (3, 2, 1)
    session_after = str(admin_client.session[batch_views_key()])
    assert "sealed" not in session_after  # the keys left the session

    committed_csv = admin_client.get(reverse("enrollment:batch-errors", args=[token]))
    rows = list(csv.reader(io.StringIO(committed_csv.getvalue().decode("utf-8-sig"))))
    assert rows[1][:3] == ["4", services.ALREADY_ENROLLED, "OLD1"] and rows[1][3] == ""

    # Committing twice does nothing more.
    again = admin_client.post(reverse("enrollment:batch-commit"), {"token": token})
    assert again.status_code == 302
    assert EnrollmentRecord.objects.count() == 2


def batch_views_key():
    from enrollment.views.batch import SESSION_KEY

    return SESSION_KEY


def test_pasted_list_and_capacity_refusal_keeps_records_pending(org, sensor, gateway, admin_client):
    response = admin_client.post(
        reverse("enrollment:batch-new"),
        {"text": "SN1,abcd\nSN2,efgh\n", "device_type": sensor.pk, "gateway": gateway.pk},
    )
    assert response.context["source"] == "pasted"
    response = admin_client.post(reverse("enrollment:batch-commit"), {"token": token_of(response)})
    assert "2 records wait (pending)" in response.context["sent"]
    assert "0 are free" in response.context["sent"]
    assert set(EnrollmentRecord.objects.values_list("status", flat=True)) == {"pending"}
    assert not Device.objects.exists()


def test_commit_rechecks_the_list(org, sensor, admin_client):
    response = upload(admin_client, "SN1,abcd\nSN2,efgh\n", device_type=sensor.pk)
    assert response.context["valid_count"] == 2
    EnrollmentRecord.objects.create(
        organization=org, serial_number="SN2", access_key="zzzz", device_type=sensor
    )
    response = admin_client.post(reverse("enrollment:batch-commit"), {"token": token_of(response)})
    assert response.status_code == 200
    assert EnrollmentBatch.objects.get().accepted == 1
    assert response.context["invalid_count"] == 1


def test_a_failed_commit_in_the_view_stores_nothing(org, sensor, admin_client, monkeypatch):
    response = upload(admin_client, "SN1,abcd\nSN2,efgh\n", device_type=sensor.pk)
    real_create = services.create

    def create_then_fail(*args, **kwargs):
        real_create(*args, **kwargs)
        raise IntegrityError("lost a race")

    monkeypatch.setattr(services, "create", create_then_fail)
    response = admin_client.post(reverse("enrollment:batch-commit"), {"token": token_of(response)})
    assert response.status_code == 409
    assert "nothing was stored" in response.content.decode()
    assert not EnrollmentRecord.objects.exists() and not EnrollmentBatch.objects.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"SN1,caf\xe9\n", "not UTF-8"),
        (b"serial,key,colour\nSN1,abcd,red\n", "unknown columns"),
        (b"", "Choose a file"),
        (b"SN,abcd\n" * (batch.MAX_ROWS + 1), "more than 10,000 rows"),
        (b"SN,abcd\n" * (batch.MAX_BYTES // 8 + 1), "larger than 10 MB"),
    ],
)
def test_bad_files_are_one_clear_error_and_nothing_stored(admin_client, content, message):
    data = {"file": SimpleUploadedFile("bad.csv", content)} if content else {}
    response = admin_client.post(reverse("enrollment:batch-new"), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert batch_views_key() not in admin_client.session


def test_htmx_gets_the_step_alone_and_refusals_as_200(admin_client, sensor):
    response = admin_client.post(
        reverse("enrollment:batch-new"), {"text": "SN1,caf"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200 and b"<html" not in response.content
    assert b"access key" in response.content
    response = admin_client.post(
        reverse("enrollment:batch-new"),
        {"text": "SN1,abcd", "device_type": sensor.pk},
        headers={"HX-Request": "true"},
    )
    assert b'id="batch-enrollment"' in response.content and b"<html" not in response.content


def test_a_foreign_token_or_organization_is_404(org, sensor, admin_client, login):
    response = upload(admin_client, "SN1,abcd\n", device_type=sensor.pk)
    token = token_of(response)
    other = login(make_member(make_organization(), [Role.ADMINISTRATOR]))
    assert other.post(reverse("enrollment:batch-commit"), {"token": token}).status_code == 404


# -- the management command ------------------------------------------------------------------


def test_enroll_import_command(org, sensor, gateway, tmp_path):
    make_license(org, seats=10)
    listing = tmp_path / "devices.csv"
    listing.write_text("serial,key,gateway\nSN1,abcd,gw-a\nSN1,efgh,gw-a\nSN3,ab,gw-a\n")
    out, err = io.StringIO(), io.StringIO()
    args = [str(listing), "--organization", org.slug, "--type", "Sensor"]
    call_command("enroll_import", *args, "--dry-run", stdout=out, stderr=err)
    assert "Dry run: 1 row valid, 2 rows refused" in out.getvalue()
    assert "100%" in err.getvalue()
    assert not EnrollmentRecord.objects.exists()

    out = io.StringIO()
    call_command("enroll_import", *args, stdout=out, stderr=io.StringIO())
    assert "1 record created, 2 rows refused" in out.getvalue()
    assert "1 sent to their gateways" in out.getvalue()
    errors = (tmp_path / "devices.csv.errors.csv").read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(errors)))
    assert [r[0] for r in rows[1:]] == ["3", "4"] and all(r[3] == "" for r in rows[1:])
    assert EnrollmentRecord.objects.get().status == EnrollmentStatus.IN_PROGRESS


def test_enroll_import_refuses_a_bad_file_and_unknown_options(org, tmp_path):
    listing = tmp_path / "bad.csv"
    listing.write_bytes(b"SN1,caf\xe9\n")
    with pytest.raises(CommandError, match="not UTF-8"):
        call_command("enroll_import", str(listing), "--organization", org.slug)
    with pytest.raises(CommandError, match="No organization"):
        call_command("enroll_import", str(listing), "--organization", "nope")
    with pytest.raises(CommandError, match="No device type"):
        call_command("enroll_import", str(listing), "--organization", org.slug, "--type", "X")
    user = make_member(org, [Role.DEVICE_MANAGER])
    with pytest.raises(CommandError, match="may not enroll"):
        call_command(
            "enroll_import", str(listing), "--organization", org.slug, "--user", user.username
        )
    assert not EnrollmentRecord.objects.exists()
