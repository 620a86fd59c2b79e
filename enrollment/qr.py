"""The QR payload on a device's label (``FG1;S=<serial>;K=<key>;T=<device type>``).

Written down for third parties in ``docs/qr-payload.md``. ``parse`` reads a payload
(strictly: a label we cannot read completely is refused, never half-used), ``format``
writes one, ``decode_image`` finds the one payload in a photo (zxing-cpp) and
``image`` draws a QR code of a payload (zxing-cpp's writer).
"""

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

import zxingcpp
from django import forms
from PIL import Image

from enrollment import photos
from enrollment.validators import clean_key, clean_serial

VERSION = "FG1"
MAX_LENGTH = 512  # characters of a whole payload
TYPE_MAX = 80  # DeviceType.name
FIELDS = {"S": "serial_number", "K": "access_key", "T": "device_type"}
# Characters written as themselves; everything else is percent-encoded (UTF-8).
SAFE = "!\"#$&'()*+,-./:<>?@[\\]^_`{|}~"
_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class PayloadError(ValueError):
    """A QR code or payload that cannot be used, with a sentence for the user."""


class NotAPayload(PayloadError):
    """Text that is not a Fleetgate enrollment payload (or of a version we do not read)."""


class NoCodeFound(PayloadError):
    pass


class SeveralCodes(PayloadError):
    pass


NO_CODE = "No QR code was found in this photo. Hold the camera closer, in good light."
SEVERAL = "This photo shows several different QR codes; photograph one label at a time."


@dataclass(frozen=True)
class Payload:
    serial_number: str
    access_key: str
    device_type: str

    def __repr__(self):  # never the key, in a log or a traceback
        return f"Payload(serial_number={self.serial_number!r}, device_type={self.device_type!r})"


def _encode(value: str) -> str:
    return quote(value, safe=SAFE)


def _decode(value: str, letter: str) -> str:
    if _ESCAPE.search(value):
        raise PayloadError(f"Field {letter} has a '%' that is not followed by two hex digits.")
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"Field {letter} is not valid UTF-8 once decoded.") from exc


def _check(serial: str, key: str, device_type: str) -> Payload:
    try:
        serial_ok = clean_serial(serial)
    except forms.ValidationError as exc:
        raise PayloadError(f"S (serial number): {exc.messages[0]}") from None
    if serial_ok != serial:
        raise PayloadError("S (serial number) has leading or trailing spaces.")
    try:
        key_ok = clean_key(key)
    except forms.ValidationError as exc:
        raise PayloadError(f"K (access key): {exc.messages[0]}") from None
    if key_ok != key:
        raise PayloadError("K (access key) has leading or trailing spaces.")
    if not 1 <= len(device_type) <= TYPE_MAX or not device_type.isprintable():
        raise PayloadError(f"T (device type) is 1 to {TYPE_MAX} printable characters.")
    if device_type != device_type.strip():
        raise PayloadError("T (device type) has leading or trailing spaces.")
    return Payload(serial, key, device_type)


def parse(text: str) -> Payload:
    """The payload in ``text``, or ``PayloadError`` saying what is wrong with it."""
    if not isinstance(text, str):
        raise NotAPayload("A QR payload is text.")
    text = text.strip("\r\n")
    if len(text) > MAX_LENGTH:
        raise PayloadError(f"This payload is longer than {MAX_LENGTH} characters.")
    head, _, rest = text.partition(";")
    if head != VERSION:
        if re.fullmatch(r"FG\d+", head):
            raise NotAPayload(f"This label uses payload version {head}; this portal reads FG1.")
        raise NotAPayload("This QR code is not a Fleetgate enrollment label (it must start FG1;).")
    values: dict[str, str] = {}
    for part in rest.split(";") if rest else []:
        letter, equals, value = part.partition("=")
        if not equals:
            raise PayloadError(f"'{part[:20]}' is not a field (expected LETTER=value).")
        if letter not in FIELDS:
            raise PayloadError(f"Unknown field '{letter[:10]}' (FG1 has S, K and T).")
        if letter in values:
            raise PayloadError(f"Field {letter} appears twice.")
        values[letter] = _decode(value, letter)
    missing = [letter for letter in FIELDS if letter not in values]
    if missing:
        names = ", ".join(f"{m} ({FIELDS[m].replace('_', ' ')})" for m in missing)
        raise PayloadError(f"The payload lacks {names}.")
    return _check(values["S"], values["K"], values["T"])


def format(serial_number: str, access_key: str, device_type: str) -> str:
    """The payload text of a label; the values are checked like ``parse`` checks them."""
    payload = _check(serial_number, access_key, device_type)
    text = (
        f"{VERSION};S={_encode(payload.serial_number)};K={_encode(payload.access_key)};"
        f"T={_encode(payload.device_type)}"
    )
    if len(text) > MAX_LENGTH:
        raise PayloadError(f"This payload is longer than {MAX_LENGTH} characters.")
    return text


def format_record(record) -> str:
    """A record's label payload (its device type's name)."""
    return format(record.serial_number, record.access_key, record.device_type.name)


def decode_image(upload) -> Payload:
    """The payload of the one QR code in a photo (an uploaded file, or its bytes).

    Raises ``photos.PhotoError`` for a non-image or an oversized one, ``NoCodeFound``,
    ``SeveralCodes`` (different codes; the same code twice is fine) or a
    ``PayloadError`` for a code that is not a valid FG1 payload. The photo is read,
    decoded (in grey: all the reader needs) and searched inside one of the process's
    decode slots (``photos.decoding``), so memory stays bounded.
    """
    with photos.decoding():
        image = photos.open_image(photos.read_upload(upload), mode="L")
        if image.mode not in ("L", "RGB"):
            image = image.convert("L")
        found = zxingcpp.read_barcodes(image, formats=(zxingcpp.BarcodeFormat.QRCode,))
        del image
    texts = list(dict.fromkeys(code.text for code in found if code.valid))
    if not texts:
        raise NoCodeFound(NO_CODE)
    if len(texts) > 1:
        raise SeveralCodes(SEVERAL)
    return parse(texts[0])


def image(text: str, scale: int = 8) -> Image.Image:
    """A black-on-white QR code of ``text`` (mode "L"), quiet zone included."""
    barcode = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    bitmap = memoryview(zxingcpp.write_barcode_to_image(barcode, scale=scale))
    height, width = bitmap.shape
    return Image.frombytes("L", (width, height), bitmap.tobytes())
