"""What a serial number and an access key look like: one rule for the form, the batch
import and the QR payload."""

import re

from django import forms

SERIAL_RE = re.compile(r"[\x21-\x7e]{1,64}")  # printable ASCII, no spaces
KEY_MIN, KEY_MAX = 4, 128


def clean_serial(value: str) -> str:
    value = (value or "").strip()
    if not SERIAL_RE.fullmatch(value):
        raise forms.ValidationError(
            "A serial number is 1 to 64 printable characters without spaces.", code="format"
        )
    return value


def clean_key(value: str) -> str:
    value = (value or "").strip()
    if not KEY_MIN <= len(value) <= KEY_MAX or not value.isprintable():
        raise forms.ValidationError(
            f"An access key is {KEY_MIN} to {KEY_MAX} printable characters.", code="format"
        )
    return value
