"""Batch enrollment: read a pasted or uploaded list, check every row, commit the good ones.

The list is CSV, TSV or ``serial;key`` lines (comma, tab or semicolon, sniffed from the
first line), UTF-8 with or without a BOM, with an optional header. Columns, in this
order when there is no header: serial, key, then optionally type (a device type's
name), gateway (a gateway's UID), name and location. The errors download adds ``row``
and ``reason`` columns; a header may name them and they are ignored, so the download
can be fixed and imported again as it is.

Two kinds of refusal:

- ``BatchError``: the whole list is refused (too big, too many rows, not UTF-8, a
  header naming unknown columns, a broken CSV quote) — nothing is stored;
- a row's ``reasons``: that row is refused (format, duplicate within the list, already
  enrolled or pending, unknown device type or gateway) and listed with its row number
  as the user sees it in the file (the header is row 1 when there is one).

``check`` is set-based: device types and gateways are loaded once and
``services.refusals`` answers for all serials, so the number of queries does not
depend on the number of rows. ``commit`` re-checks and writes the batch and its
records in one transaction: it stores everything or nothing.
"""

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field

from django import forms
from django.db import transaction

from devices.models import DeviceType, Gateway
from enrollment import services
from enrollment.models import EnrollmentBatch
from enrollment.validators import clean_key, clean_serial
from licensing import capacity
from portal import exports
from portal.validators import validate_name

MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 10_000
MAX_NAME, MAX_LOCATION = 120, 255

COLUMNS = ("serial", "key", "type", "gateway", "name", "location")
REQUIRED = ("serial", "key")
# What a header may call each column (lower case; spaces and dashes read as "_").
ALIASES = {
    "serial": "serial",
    "serial_number": "serial",
    "serialnumber": "serial",
    "serial_no": "serial",
    "sn": "serial",
    "key": "key",
    "access_key": "key",
    "accesskey": "key",
    "code": "key",
    "access_code": "key",
    "type": "type",
    "device_type": "type",
    "devicetype": "type",
    "gateway": "gateway",
    "gateway_uid": "gateway",
    "gw": "gateway",
    "name": "name",
    "device_name": "name",
    "location": "location",
    "location_note": "location",
    # The errors download's own columns: read and ignored.
    "row": None,
    "reason": None,
}
DELIMITERS = {",": "comma", "\t": "tab", ";": "semicolon"}
KEY_OMITTED = (
    "Access keys are never sent back: fill in the key column of each row before "
    "importing the file again."
)

Progress = Callable[[int, int], None]


class BatchError(Exception):
    """The whole list is refused; ``str(error)`` says why and what to do."""


@dataclass
class Row:
    number: int  # as the user sees it in the file: header = row 1
    values: dict[str, str]  # column → text as in the file (the key too: server-side only)
    reasons: list[str] = field(default_factory=list)
    fields: dict | None = None  # EnrollmentRecord fields, once valid

    @property
    def valid(self) -> bool:
        return not self.reasons

    @property
    def reason(self) -> str:
        return " ".join(self.reasons)

    @property
    def serial(self) -> str:
        return self.values.get("serial", "")


@dataclass
class Parsed:
    rows: list[Row]
    header: bool = False
    delimiter: str = ","

    @property
    def delimiter_name(self) -> str:
        return DELIMITERS[self.delimiter]


@dataclass
class Checked:
    rows: list[Row]
    header: bool = False

    @property
    def valid(self) -> list[Row]:
        return [r for r in self.rows if r.valid]

    @property
    def invalid(self) -> list[Row]:
        return [r for r in self.rows if not r.valid]

    @property
    def through_gateways(self) -> int:
        return sum(1 for r in self.valid if r.fields["gateway"] is not None)


# -- reading ----------------------------------------------------------------------------


def read_upload(upload) -> bytes:
    """An uploaded file's bytes; one byte past the limit is enough to refuse it."""
    return upload.read(MAX_BYTES + 1)


def decode(data: bytes | str) -> str:
    """UTF-8 text (a BOM dropped); a clear BatchError for anything else or too much."""
    if isinstance(data, str):
        if len(data.encode("utf-8", "surrogatepass")) > MAX_BYTES:
            raise BatchError(too_big())
        return data.removeprefix("\ufeff")
    if len(data) > MAX_BYTES:
        raise BatchError(too_big())
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise BatchError(
            "The file is UTF-16 text, not UTF-8: save it as “CSV UTF-8” (or plain UTF-8 "
            "text) and import it again."
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        row = data.count(b"\n", 0, error.start) + 1
        line_start = data.rfind(b"\n", 0, error.start) + 1
        raise BatchError(
            f"The file is not UTF-8 text: the byte 0x{data[error.start]:02X} on row {row} "
            f"(character {error.start - line_start + 1}) is not valid UTF-8 — the file was "
            "probably saved as Latin-1 or Windows-1252. Save it as “CSV UTF-8” and import "
            "it again."
        ) from None


def too_big() -> str:
    return f"The list is larger than {MAX_BYTES // (1024 * 1024)} MB: split it into smaller files."


def too_many() -> str:
    return f"The list has more than {MAX_ROWS:,} rows: split it into several imports."


def _normalise(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


def _sniff(text: str) -> tuple[str, int]:
    """The delimiter, and how many lines to skip (Excel's ``sep=;`` line)."""
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("sep=") and len(line.rstrip()) == 5 and line[4] in DELIMITERS:
            return line[4], 1
        if "\t" in line:
            return "\t", 0
        return (";" if line.count(";") > line.count(",") else ","), 0
    return ",", 0


def _header(cells: list[str]) -> list[str | None] | None:
    """The columns a first row names, or None when it is data.

    A header names only known columns, or names both the serial and the key column
    (then its other names must be known too: a typo is an error, not a device).
    """
    names = [_normalise(c) for c in cells]
    filled = [n for n in names if n]
    known = [n for n in filled if n in ALIASES]
    named = {ALIASES[n] for n in known}
    if len(known) < len(filled) and not ({"serial", "key"} <= named):
        return None
    unknown = [c.strip() for c, n in zip(cells, names, strict=True) if n and n not in ALIASES]
    if unknown:
        raise BatchError(
            f"The header (row 1) names unknown columns: {', '.join(map(repr, unknown))}. "
            f"Known columns: {', '.join(COLUMNS)}."
        )
    columns = [ALIASES.get(n) for n in names]
    seen = [c for c in columns if c]
    doubled = sorted({c for c in seen if seen.count(c) > 1})
    if doubled:
        raise BatchError(f"The header (row 1) names the column {doubled[0]!r} twice.")
    missing = [c for c in REQUIRED if c not in seen]
    if missing:
        raise BatchError(
            f"The header (row 1) has no {' or '.join(missing)} column: every row needs a "
            "serial and a key."
        )
    return columns


def parse(data: bytes | str) -> Parsed:
    """Rows of the list, each with its row number and values; BatchError for the file."""
    text = decode(data)
    delimiter, skip = _sniff(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows, columns, header, line = [], list(COLUMNS), False, 0
    try:
        for cells in reader:
            number, line = line + 1, reader.line_num
            if skip and number == 1:
                continue
            if not any(c.strip() for c in cells):
                continue  # blank lines keep their row numbers but are no rows
            if not rows and not header and (named := _header(cells)) is not None:
                columns, header = named, True
                continue
            if len(rows) == MAX_ROWS:
                raise BatchError(too_many())
            rows.append(_row(number, cells, columns, header))
    except csv.Error as error:
        raise BatchError(
            f"Row {line + 1} cannot be read as {DELIMITERS[delimiter]}-separated values "
            f"({error}). Check its quotes."
        ) from None
    return Parsed(rows, header, delimiter)


def _row(number: int, cells: list[str], columns: list, header: bool) -> Row:
    values, reasons = {}, []
    for column, cell in zip(columns, cells, strict=False):
        if column:
            # A cell our errors file escaped ("'=1+2") reads back as it was; a key is
            # taken as typed (it is never in that file).
            cell = cell.strip()
            values[column] = cell if column == "key" else exports.unescape(cell)
    extra = [c for c in cells[len(columns) :] if c.strip()]
    if extra:
        if header:
            reasons.append(
                f"{len(cells)} columns, but the header names {len(columns)}: remove the "
                "extra values."
            )
        else:
            reasons.append(f"{len(cells)} columns; at most {len(COLUMNS)} ({', '.join(COLUMNS)}).")
    elif not header and len(cells) < len(REQUIRED):
        reasons.append("Only one column: each row needs a serial and a key.")
    return Row(number, values, reasons)


# -- checking ---------------------------------------------------------------------------


def check(
    organization,
    parsed: Parsed,
    *,
    device_type=None,
    gateway=None,
    progress: Progress | None = None,
) -> Checked:
    """Every row checked: format, duplicates in the list, refusals, type and gateway.

    ``device_type`` and ``gateway``: the defaults for rows that leave the column empty
    (no gateway at all: the installer app enrolls the device on site).
    A constant number of queries whatever the number of rows.
    """
    types = {t.name.casefold(): t for t in DeviceType.objects.all()}
    gateways = {g.uid: g for g in Gateway.objects.for_organization(organization).defer("secret")}
    first_row: dict[str, int] = {}
    total = len(parsed.rows)
    for n, row in enumerate(parsed.rows, 1):
        if row.reasons:  # the columns are wrong: the values mean nothing
            continue
        row.fields = _fields(row, types, gateways, device_type, gateway)
        serial = row.fields.get("serial_number")
        if serial:
            if serial in first_row:
                row.reasons.append(f"Serial {serial} is already on row {first_row[serial]}.")
            else:
                first_row[serial] = row.number
        if progress and n % 1000 == 0:
            progress(n, total)
    refused = services.refusals(organization, first_row)
    for row in parsed.rows:
        serial = row.fields and row.fields.get("serial_number")
        if serial in refused and first_row.get(serial) == row.number:
            row.reasons.append(refused[serial])
        if row.reasons:
            row.fields = None
    if progress:
        progress(total, total)
    return Checked(parsed.rows, parsed.header)


def _fields(row: Row, types, gateways, default_type, default_gateway) -> dict:
    values, reasons, fields = row.values, row.reasons, {}
    try:
        fields["serial_number"] = clean_serial(values.get("serial", ""))
    except forms.ValidationError as error:
        reasons.append("No serial number." if not values.get("serial") else error.messages[0])
    try:
        fields["access_key"] = clean_key(values.get("key", ""))
    except forms.ValidationError as error:
        reasons.append("No access key." if not values.get("key") else error.messages[0])
    type_name = values.get("type", "")
    if type_name:
        fields["device_type"] = types.get(type_name.casefold())
        if fields["device_type"] is None:
            reasons.append(f"Unknown device type “{type_name}”.")
    elif default_type is not None:
        fields["device_type"] = default_type
    else:
        reasons.append("No device type: fill in the type column or choose a default type.")
    uid = values.get("gateway", "")
    if uid:
        fields["gateway"] = gateways.get(uid)
        if fields["gateway"] is None:
            reasons.append(f"Unknown gateway “{uid}” (give its UID).")
    else:
        fields["gateway"] = default_gateway
    fields["name"] = " ".join(values.get("name", "").split())
    if len(fields["name"]) > MAX_NAME:
        reasons.append(f"The name is longer than {MAX_NAME} characters.")
    fields["location_note"] = " ".join(values.get("location", "").split())
    if len(fields["location_note"]) > MAX_LOCATION:
        reasons.append(f"The location is longer than {MAX_LOCATION} characters.")
    for key in ("name", "location_note"):
        try:
            validate_name(fields[key])
        except forms.ValidationError as error:
            reasons.append(error.messages[0])
    return fields


# -- committing -------------------------------------------------------------------------


class NothingToImport(Exception):
    """No row is valid (any more): nothing was stored."""


@dataclass
class Committed:
    batch: EnrollmentBatch
    records: list
    checked: Checked


def commit(
    organization,
    user,
    parsed: Parsed,
    *,
    source: str,
    device_type=None,
    gateway=None,
    progress: Progress | None = None,
) -> Committed:
    """Re-check the rows (state may have changed since the preview) and store the batch
    and a record per valid row in one transaction: everything or nothing."""
    with transaction.atomic():
        checked = check(
            organization, parsed, device_type=device_type, gateway=gateway, progress=progress
        )
        valid = checked.valid
        if not valid:
            raise NothingToImport("No row of the list can be enrolled: nothing was stored.")
        batch = EnrollmentBatch.objects.create(
            organization=organization,
            created_by=user if getattr(user, "is_authenticated", False) else None,
            source=source[:255],
            rows=len(checked.rows),
            accepted=len(valid),
            rejected=len(checked.rows) - len(valid),
        )
        records = services.create(organization, user, [r.fields for r in valid], batch=batch)
    return Committed(batch, records, checked)


def send(organization, user, records) -> str:
    """Send the records that have a gateway; a sentence saying what happened."""
    through = [r for r in records if r.gateway_id]
    waiting = len(records) - len(through)
    parts = []
    if through:
        try:
            services.send(organization, user, through)
        except capacity.CapacityExceeded as refused:
            parts.append(
                f"{plural(len(through), 'record')} wait (pending): they need "
                f"{refused.requested:,} seats and {refused.free:,} are free. Add a license, "
                "then send them from the Enrollment widget."
            )
        else:
            parts.append(f"{len(through):,} sent to their gateways.")
    if waiting:
        parts.append(f"{waiting:,} wait for the installer app (no gateway).")
    return " ".join(parts)


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


# -- the errors download ------------------------------------------------------------------

ERROR_COLUMNS = ("row", "reason", *COLUMNS)


def error_rows(rows: list[Row]) -> list[list]:
    """The refused rows, to fix and import again: row, reason and the row's own columns —
    the key column left empty (keys never leave the server). ``ERROR_COLUMNS`` heads them;
    ``portal.exports`` writes them (escaped: a refused serial may well be a formula)."""
    return [
        [row.number, row.reason, *({**row.values, "key": ""}.get(c, "") for c in COLUMNS)]
        for row in rows
    ]


def errors_csv(rows: list[Row]) -> str:
    """The refused rows as the whole CSV file (the download and ``enroll_import`` stream
    theirs from ``error_rows``)."""
    return exports.text(ERROR_COLUMNS, error_rows(rows))
