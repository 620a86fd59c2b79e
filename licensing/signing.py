"""Signed license files: what they contain, how they are signed, how they are checked.

A license file is one small UTF-8 JSON object (at most ``MAX_FILE_BYTES``, 16 KiB)::

    {
      "format": "fleetgate-license/1",
      "license_id": "3f0c5e0a-4d0e-4a57-9d7e-2b1f3f0f6a11",
      "organization": "acme",
      "organization_name": "Acme Corp",
      "capacity": 250,
      "valid_from": "2026-01-01",
      "valid_until": "2026-12-31",
      "issued_at": "2025-12-20T09:30:00+00:00",
      "signature": "<base64 of the 64-byte Ed25519 signature>"
    }

* ``license_id`` — a UUID; a license id is accepted once, in any organization.
* ``organization`` — the slug of the organization it is for (the binding field);
  ``organization_name`` is only there for the humans reading the file.
* ``capacity`` — how many devices it licenses: a JSON integer from 1 to ``MAX_CAPACITY``.
* ``valid_from`` / ``valid_until`` — ISO dates (``YYYY-MM-DD``), both inclusive, in the
  portal's time zone (``TIME_ZONE``).
* ``issued_at`` — ISO 8601 date-time with a UTC offset.

**The signature** is Ed25519 (RFC 8032) with the vendor's private key over the bytes::

    b"fleetgate-license/1\\n" + json.dumps(
        {every field except "signature"},
        sort_keys=True, separators=(",", ":"), ensure_ascii=True,
    ).encode("ascii")

i.e. the format name and a newline, then the fields as compact JSON with keys sorted
and non-ASCII characters escaped as ``\\uXXXX``. The verifier parses the file and
re-encodes the fields the same way, so whitespace, key order and indentation of the
file itself do not matter, but any change to a value does. The public key is the raw
32-byte key, base64-encoded (the ``LICENSE_PUBLIC_KEY`` setting).

``verify`` checks, in this order, and raises ``LicenseError`` with a sentence for
people and a ``code`` for programs: size (``too_large``), shape (``malformed``),
signature (``bad_signature``), capacity (``bad_capacity``), dates (``malformed``),
organization (``wrong_organization``), validity period (``not_yet_valid``,
``expired``) and single use (``already_used``). Nothing unsigned is interpreted
before the signature is known to be good.
"""

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.utils import timezone

FORMAT = "fleetgate-license/1"
MAX_FILE_BYTES = 16 * 1024
MAX_CAPACITY = 100_000_000  # far beyond any fleet; keeps sums inside a database integer
SIGNED_FIELDS = (
    "format",
    "license_id",
    "organization",
    "organization_name",
    "capacity",
    "valid_from",
    "valid_until",
    "issued_at",
)
FILE_FIELDS = (*SIGNED_FIELDS, "signature")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class LicenseError(Exception):
    """A license file that is refused; ``str(error)`` is the reason people read."""

    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    BAD_CAPACITY = "bad_capacity"
    WRONG_ORGANIZATION = "wrong_organization"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    ALREADY_USED = "already_used"

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class LicenseKeyError(ValueError):
    """A key that is not a usable Ed25519 key (a configuration error, not a bad file)."""


@dataclass(frozen=True)
class LicenseClaims:
    """What a verified license file says."""

    license_id: uuid.UUID
    organization: str
    organization_name: str
    capacity: int
    valid_from: date
    valid_until: date
    issued_at: datetime

    def is_valid_on(self, day: date) -> bool:
        return self.valid_from <= day <= self.valid_until


# --- keys ---------------------------------------------------------------------------


def _b64decode(value, what: str) -> bytes:
    if isinstance(value, str):
        value = value.strip().encode("ascii", "replace")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise LicenseKeyError(f"The {what} is not valid base64.") from None


def load_public_key(value) -> Ed25519PublicKey:
    """An Ed25519 public key from a key object or base64 of the raw 32 bytes."""
    if isinstance(value, Ed25519PublicKey):
        return value
    raw = _b64decode(value or "", "license public key")
    if len(raw) != 32:
        raise LicenseKeyError(
            f"The license public key must be 32 bytes (base64 of a raw Ed25519 key); it is {len(raw)}."
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def load_private_key(value) -> Ed25519PrivateKey:
    """An Ed25519 private key from a key object, a PKCS#8 PEM, or base64 of the raw 32 bytes."""
    if isinstance(value, Ed25519PrivateKey):
        return value
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value or "")
    if text.lstrip().startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.strip().encode("ascii"), password=None)
        except (ValueError, TypeError) as error:
            raise LicenseKeyError(f"The private key PEM could not be read: {error}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise LicenseKeyError("The private key is not an Ed25519 key.")
        return key
    raw = _b64decode(text, "license private key")
    if len(raw) != 32:
        raise LicenseKeyError(
            f"The license private key must be 32 bytes (base64 of a raw Ed25519 key); it is {len(raw)}."
        )
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_b64(key) -> str:
    """The base64 raw form of a public key, or of a private key's public half."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def private_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode("ascii")


# --- signing ------------------------------------------------------------------------


def canonical_bytes(fields: dict) -> bytes:
    """The exact bytes that are signed (see the module docstring)."""
    unsigned = {key: value for key, value in fields.items() if key != "signature"}
    body = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return FORMAT.encode("ascii") + b"\n" + body.encode("ascii")


def sign_document(private_key, fields: dict) -> bytes:
    """Sign ``fields`` exactly as given and return the license file.

    No checks: ``issue`` is the vendor's way in; this lower level exists so tests can
    make properly signed files with bad contents.
    """
    key = load_private_key(private_key)
    signature = key.sign(canonical_bytes(fields))
    document = {name: fields[name] for name in SIGNED_FIELDS if name in fields}
    document.update({k: v for k, v in fields.items() if k not in document})
    document["signature"] = base64.b64encode(signature).decode("ascii")
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def issue(private_key, fields: dict) -> bytes:
    """A signed license file for ``fields``.

    ``fields`` needs ``organization`` (slug), ``capacity``, ``valid_from`` and
    ``valid_until`` (dates or ISO strings); ``organization_name`` defaults to the slug,
    ``license_id`` to a new UUID and ``issued_at`` to now. Raises ``LicenseError`` for
    contents no portal would accept (a license that could never be valid is a mistake).
    """
    unknown = set(fields) - set(SIGNED_FIELDS)
    if unknown:
        raise ValueError(f"Unknown license field(s): {', '.join(sorted(unknown))}.")
    document = {
        "format": FORMAT,
        "license_id": str(fields.get("license_id") or uuid.uuid4()),
        "organization": fields["organization"],
        "organization_name": fields.get("organization_name") or fields["organization"],
        "capacity": fields["capacity"],
        "valid_from": _iso(fields["valid_from"]),
        "valid_until": _iso(fields["valid_until"]),
        "issued_at": _iso(fields.get("issued_at") or timezone.now().replace(microsecond=0)),
    }
    _claims(document)  # refuse to issue what verify would refuse for its contents
    return sign_document(private_key, document)


def _iso(value) -> str:
    return value.isoformat() if isinstance(value, (date, datetime)) else str(value)


# --- verifying ----------------------------------------------------------------------


def _malformed(detail: str) -> LicenseError:
    return LicenseError(LicenseError.MALFORMED, f"This is not a valid license file: {detail}.")


def _no_duplicate_keys(pairs):
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise _malformed(f"the field {duplicates[0]!r} appears twice")
    return dict(pairs)


def _refuse_constant(name):
    raise _malformed(f"it contains {name}, which is not a number")


def _parse(data: bytes) -> dict:
    if len(data) > MAX_FILE_BYTES:
        raise LicenseError(
            LicenseError.TOO_LARGE,
            f"The file is too large to be a license file (over {MAX_FILE_BYTES // 1024} KiB).",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _malformed("it is not UTF-8 text") from None
    try:
        document = json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_refuse_constant
        )
    except json.JSONDecodeError as error:
        raise _malformed(f"it is not JSON ({error.msg} at line {error.lineno})") from None
    except (ValueError, RecursionError):  # a number too long to read, nesting too deep
        raise _malformed("it is not JSON a license file could contain") from None
    if not isinstance(document, dict):
        raise _malformed("it is not a JSON object")
    missing = [name for name in FILE_FIELDS if name not in document]
    if missing:
        raise _malformed(f"the field {missing[0]!r} is missing")
    unknown = sorted(set(document) - set(FILE_FIELDS))
    if unknown:
        raise _malformed(f"it has an unknown field {unknown[0]!r}")
    if document["format"] != FORMAT:
        raise _malformed(f"its format is {document['format']!r}, this portal reads {FORMAT!r}")
    return document


def _check_signature(document: dict, public_key) -> None:
    signature = document["signature"]
    try:
        raw = base64.b64decode(signature, validate=True) if isinstance(signature, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 64:
        raise _malformed("its signature is not a base64 Ed25519 signature")
    try:
        load_public_key(public_key).verify(raw, canonical_bytes(document))
    except InvalidSignature:
        raise LicenseError(
            LicenseError.BAD_SIGNATURE,
            "The signature does not match: this license was not issued by the vendor, "
            "or it was changed after it was issued.",
        ) from None


def _date(document: dict, name: str) -> date:
    value = document[name]
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise _malformed(f"{name} is not a date (YYYY-MM-DD)")


def _claims(document: dict) -> LicenseClaims:
    """Typed claims from a (signed) document; raises for contents that make no sense."""
    capacity = document["capacity"]
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
        raise LicenseError(
            LicenseError.BAD_CAPACITY,
            f"The license's capacity must be a positive whole number of devices, not {capacity!r}.",
        )
    if capacity > MAX_CAPACITY:
        raise LicenseError(
            LicenseError.BAD_CAPACITY,
            f"The license's capacity of {capacity} devices is beyond the {MAX_CAPACITY:,} a "
            "license may carry.",
        )
    try:
        license_id = uuid.UUID(str(document["license_id"]))
    except ValueError:
        raise _malformed("license_id is not a UUID") from None
    for name in ("organization", "organization_name"):
        if not isinstance(document[name], str) or not document[name].strip():
            raise _malformed(f"{name} is not a name")
    valid_from, valid_until = _date(document, "valid_from"), _date(document, "valid_until")
    if valid_until < valid_from:
        raise _malformed(f"it ends ({valid_until}) before it starts ({valid_from})")
    try:
        issued_at = datetime.fromisoformat(str(document["issued_at"]))
    except ValueError:
        raise _malformed("issued_at is not an ISO 8601 date-time") from None
    if issued_at.tzinfo is None:
        raise _malformed("issued_at has no UTC offset")
    return LicenseClaims(
        license_id=license_id,
        organization=document["organization"],
        organization_name=document["organization_name"],
        capacity=capacity,
        valid_from=valid_from,
        valid_until=valid_until,
        issued_at=issued_at,
    )


def verify(
    data: bytes,
    public_key,
    *,
    organization: str | None = None,
    today: date | None = None,
    is_used: Callable[[uuid.UUID], bool] | None = None,
) -> LicenseClaims:
    """The claims of a genuine, currently valid license file, or ``LicenseError``.

    ``organization`` is the slug the license must be for (None skips the check);
    ``today`` defaults to the portal's local date; ``is_used`` answers whether a
    license id was installed before (the caller owns that memory — the database).
    """
    document = _parse(data)
    _check_signature(document, public_key)
    claims = _claims(document)
    if organization is not None and claims.organization != organization:
        raise LicenseError(
            LicenseError.WRONG_ORGANIZATION,
            f"This license is for another organization "
            f"({claims.organization_name}, “{claims.organization}”), not for this one.",
        )
    today = today or timezone.localdate()
    if today < claims.valid_from:
        raise LicenseError(
            LicenseError.NOT_YET_VALID,
            f"This license is not valid yet: it starts on {claims.valid_from.isoformat()}.",
        )
    if today > claims.valid_until:
        raise LicenseError(
            LicenseError.EXPIRED,
            f"This license expired: its last valid day was {claims.valid_until.isoformat()}.",
        )
    if is_used is not None and is_used(claims.license_id):
        raise already_used(claims.license_id)
    return claims


def already_used(license_id) -> LicenseError:
    return LicenseError(
        LicenseError.ALREADY_USED,
        f"This license ({license_id}) has already been uploaded; each license can be used once.",
    )
