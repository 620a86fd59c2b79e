"""The single-device enrollment form; batch rows go through ``enrollment.batch``."""

import re

from django import forms

from devices.models import DeviceType, Gateway
from enrollment import services
from portal.validators import validate_name

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


class EnrollForm(forms.Form):
    serial_number = forms.CharField(max_length=64, label="Serial number")
    access_key = forms.CharField(
        max_length=KEY_MAX,
        label="Access key",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="From the device's label. Stored encrypted; never shown again.",
    )
    device_type = forms.ModelChoiceField(queryset=DeviceType.objects.none(), label="Device type")
    gateway = forms.ModelChoiceField(
        queryset=Gateway.objects.none(), help_text="The gateway that enrolls the device."
    )
    name = forms.CharField(max_length=120, required=False, validators=[validate_name])
    location_note = forms.CharField(
        max_length=255, required=False, label="Location", validators=[validate_name]
    )

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.fields["device_type"].queryset = DeviceType.objects.order_by("name")
        self.fields["gateway"].queryset = Gateway.objects.for_organization(organization).order_by(
            "name"
        )

    def clean_serial_number(self):
        serial = clean_serial(self.cleaned_data["serial_number"])
        reason = services.refusals(self.organization, [serial]).get(serial)
        if reason:
            raise forms.ValidationError(reason, code="refused")
        return serial

    def clean_access_key(self):
        return clean_key(self.cleaned_data["access_key"])

    def row(self) -> dict:
        return {k: self.cleaned_data[k] for k in self.fields}
