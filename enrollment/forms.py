"""Enrollment forms: one device (the widget, the installer pages, the API) and a list
(the batch page, whose rows ``enrollment.batch`` parses and checks)."""

from django import forms

from devices.models import DeviceType, Gateway
from enrollment import batch, services
from enrollment.validators import KEY_MAX, clean_key, clean_serial
from portal.forms import file_or_text
from portal.validators import validate_name


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


def resolve_device_type(value):
    """A device type by name, else by id; None when there is none."""
    value = str(value or "").strip()
    if not value:
        return None
    found = DeviceType.objects.filter(name=value).first()
    if found is None and value.isdigit():
        found = DeviceType.objects.filter(pk=int(value)).first()
    return found


def resolve_gateway(gateways, value):
    """One of ``gateways`` (already scoped) by UID, else by id; None when there is none."""
    value = str(value or "").strip()
    if not value:
        return None
    found = gateways.filter(uid=value).defer("secret").first()
    if found is None and value.isdigit():
        found = gateways.filter(pk=int(value)).defer("secret").first()
    return found


def enrollment_form(organization, data, *, app_only=False) -> EnrollForm:
    """The widget's form, for one device; app-only enrollment has no gateway."""
    form = EnrollForm(data, organization=organization)
    if app_only:
        del form.fields["gateway"]
    return form


class BatchForm(forms.Form):
    file = forms.FileField(
        required=False,
        label="File",
        help_text="CSV, TSV or serial;key lines, UTF-8; up to 10,000 rows and 10 MB.",
        widget=forms.FileInput(attrs={"accept": ".csv,.tsv,.txt,text/csv,text/plain"}),
    )
    text = forms.CharField(
        required=False,
        strip=False,
        label="Or paste the list",
        widget=forms.Textarea(
            attrs={
                "rows": 8,
                "spellcheck": "false",
                "autocomplete": "off",
                "placeholder": "serial,key[,type,gateway,name,location]",
            }
        ),
    )
    device_type = forms.ModelChoiceField(
        queryset=DeviceType.objects.none(),
        required=False,
        label="Device type",
        empty_label="— from the type column —",
        help_text="For rows that leave the type column empty.",
    )
    gateway = forms.ModelChoiceField(
        queryset=Gateway.objects.none(),
        required=False,
        empty_label="— none: the installer app enrolls them —",
        help_text="For rows that leave the gateway column empty.",
    )

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.parsed = None
        self.data_bytes = b""
        self.fields["device_type"].queryset = DeviceType.objects.order_by("name")
        self.fields["gateway"].queryset = (
            Gateway.objects.for_organization(organization).defer("secret").order_by("name")
        )

    def clean(self):
        cleaned = super().clean()
        upload, text = file_or_text(
            cleaned, what="a list", neither="Choose a file or paste a list."
        )
        if upload:
            data = batch.read_upload(upload)
            cleaned["source"] = upload.name
        else:
            data = text.encode("utf-8", "surrogatepass")
            cleaned["source"] = "pasted"
        try:
            self.parsed = batch.parse(data)
        except batch.BatchError as error:
            raise forms.ValidationError(str(error)) from None
        if not self.parsed.rows:
            raise forms.ValidationError("The list has no rows.")
        self.data_bytes = data
        return cleaned
