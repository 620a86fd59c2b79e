"""Uploading an image: every refusal is a field error with the reason, and nothing is stored.

The widget, the API and ``manage.py upload_image`` all go through ``ImageUploadForm``,
so a file one of them refuses, the others refuse with the same sentence.
"""

import re

from django import forms
from django.db import transaction

from devices.models import DeviceType
from firmware import formats, services, uploads
from firmware.models import MAX_VERSION, FirmwareImage

# "sensor-2.4.1.nxi" → "2.4.1"; "fw_v10.2-rc1.hex" → "10.2-rc1"
VERSION_IN_NAME = re.compile(r"(?:^|[^0-9A-Za-z])v?(\d+(?:\.\d+)+(?:[-+][0-9A-Za-z.]+)?)\.[^.]+$")


def version_from_filename(filename: str) -> str:
    match = VERSION_IN_NAME.search(filename)
    return match.group(1) if match else ""


def image_types():
    """Device types that take images at all (the catalogue is shared by every org)."""
    return DeviceType.objects.exclude(image_extensions=[]).order_by("name")


def accepted_extensions(types) -> list[str]:
    return sorted({ext for t in types for ext in t.image_extensions})


class TypeCheckboxes(forms.CheckboxSelectMultiple):
    """Each box says which extensions its type takes, so the page can tick the types a
    dropped file fits (firmware.js)."""

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        instance = getattr(value, "instance", None)
        if instance is not None:
            option["attrs"]["data-extensions"] = " ".join(instance.image_extensions)
        return option


class DeviceTypeChoices(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj):
        return f"{obj.name} ({', '.join(obj.image_extensions)})"


class ImageUploadForm(forms.Form):
    file = forms.FileField(
        label="Image file",
        required=False,
        error_messages={"empty": services.EMPTY},
        widget=forms.FileInput(attrs={"class": "drop-input"}),
    )
    version = forms.CharField(
        max_length=MAX_VERSION,
        required=False,
        help_text="As the device will report it. Left empty: read from the image’s header "
        "or its file name (sensor-2.4.1.nxi → 2.4.1).",
    )
    device_types = DeviceTypeChoices(
        queryset=DeviceType.objects.none(),
        required=False,
        label="Device types it fits",
        widget=TypeCheckboxes,
        help_text="Left empty: every type that accepts this file’s extension.",
    )
    notes = forms.CharField(
        label="Release notes",
        required=False,
        max_length=10_000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def __init__(self, *args, organization, upload=None, progress=None, **kwargs):
        """``upload``: the request's ``ImageUploadHandler`` (cap and raw names), if any;
        ``progress``: called with (bytes, total) while the file is read and stored."""
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.upload = upload
        self.progress = progress
        types = list(image_types())
        self.fields["device_types"].queryset = image_types()
        self.fields["file"].widget.attrs["accept"] = ",".join(accepted_extensions(types))
        self.inspection = None
        self.filename = ""
        self.duplicate = None  # the existing image, when these bytes are one already

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        handler = self.upload
        if handler and "file" in handler.too_large:
            raise forms.ValidationError(uploads.too_large_message(handler.max_bytes))
        if handler and handler.dropped_name is not None and not upload:
            problem = uploads.filename_problem(handler.dropped_name) or "The file has no name."
            raise forms.ValidationError(problem)
        if not upload:
            raise forms.ValidationError("Choose an image file, or drop one here.")
        name = handler.raw_names.get("file", upload.name) if handler else upload.name
        problem = uploads.filename_problem(name)
        if problem:
            raise forms.ValidationError(problem)
        if not upload.size:
            raise forms.ValidationError(services.EMPTY)
        self.filename = name
        return upload

    def clean_version(self):
        version = self.cleaned_data.get("version", "").strip()
        if version and not version.isprintable():
            raise forms.ValidationError("The version must be printable text.")
        return version

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("file")
        if not upload or self.has_error("device_types") or self.has_error("version"):
            return cleaned
        cleaned["device_types"] = self._types_for(cleaned.get("device_types"))
        if self.has_error("device_types") or self.has_error("file"):
            return cleaned
        try:
            self.inspection = services.inspect(upload, self.filename, progress=self.progress)
        except services.ImageRefused as refusal:
            self.add_error(refusal.field, str(refusal))
            return cleaned
        version = (
            cleaned.get("version")
            or self.inspection.facts.get("version")
            or version_from_filename(self.filename)
        )
        if not version:
            self.add_error("version", "Give the image’s version: it is not in its file name.")
            return cleaned
        header = self.inspection.facts.get("version")
        if header and version != header:
            self.add_error("version", f"The image’s header says version {header}, not {version}.")
            return cleaned
        cleaned["version"] = version
        images = FirmwareImage.objects.for_organization(self.organization)
        self.duplicate = images.filter(sha256=self.inspection.sha256).first()
        if self.duplicate:
            self.add_error("file", services.duplicate_message(self.duplicate))
            return cleaned
        # A version names one set of bytes per device type, or a device reporting it could
        # not say which image it runs. Checked here, not by a constraint (it spans the
        # type relation): two uploads racing with one version for one type could both
        # pass; rare, and the audit log shows both.
        clash = (
            images.filter(version=version, device_types__in=cleaned["device_types"])
            .order_by("pk")
            .first()
        )
        if clash:
            self.add_error(
                "version",
                f"Version {version} is already image “{clash.filename}”, with other bytes, "
                "for the same device type: devices could not tell the two apart.",
            )
        return cleaned

    def _types_for(self, chosen):
        ext = formats.extension(self.filename)
        if not ext:
            self.add_error("file", "The file name has no extension, so no device type takes it.")
            return []
        if chosen:
            refusing = [t for t in chosen if ext not in t.image_extensions]
            for t in refusing:
                self.add_error(
                    "device_types",
                    f"{t.name} takes {', '.join(t.image_extensions)} images, not {ext}.",
                )
            return list(chosen)
        fitting = [t for t in image_types() if ext in t.image_extensions]
        if not fitting:
            known = ", ".join(accepted_extensions(image_types())) or "none"
            self.add_error("file", f"No device type takes {ext} images (accepted: {known}).")
        return fitting

    @property
    def reason(self) -> str:
        return " ".join(str(e) for errors in self.errors.values() for e in errors)

    def upload_image(self, user) -> FirmwareImage | None:
        """Validate and store (widget, API and command alike), and audit either way.

        Returns the new image, or None with the reasons in the form's errors (and
        ``duplicate`` set when the bytes were an image already).
        """
        image = None
        if self.is_valid():
            cleaned = self.cleaned_data
            try:
                image = services.store(
                    self.organization,
                    user,
                    cleaned["file"],
                    filename=self.filename,
                    inspection=self.inspection,
                    version=cleaned["version"],
                    notes=cleaned["notes"],
                    device_types=cleaned["device_types"],
                    progress=self.progress,
                )
            except services.DuplicateImage as duplicate:
                self.duplicate = duplicate.existing
                self.add_error("file", str(duplicate))
        if image is None:
            name = self.filename or getattr(self.cleaned_data.get("file"), "name", "") or ""
            with transaction.atomic():
                services.record_refusal(self.organization, user, name, self.reason)
        return image
