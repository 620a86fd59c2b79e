"""Uploading a license file: every refusal is a field error with the reason."""

from django import forms
from django.conf import settings
from django.db import IntegrityError, transaction

from licensing import signing
from licensing.models import License
from portal import audit
from portal.choices import AuditOutcome
from portal.forms import file_or_text


def license_id_used(license_id) -> bool:
    """Has this license id been installed before, in *any* organization?

    Deliberately unscoped: a license is single-use across the whole portal. It answers
    yes or no and reveals nothing else about other organizations.
    """
    return License.objects.filter(license_id=license_id).exists()


class LicenseUploadForm(forms.Form):
    file = forms.FileField(
        label="License file",
        required=False,
        help_text="The .json license file from the vendor.",
        widget=forms.FileInput(attrs={"accept": ".json,.lic,.txt,application/json,text/plain"}),
    )
    text = forms.CharField(
        label="Or paste the license",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "autocomplete": "off"}),
    )

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.claims = None
        self.raw = ""
        self.error_field = "file"
        self.refusal = None  # the LicenseError, when the file was refused

    def clean(self):
        cleaned = super().clean()
        upload, text = file_or_text(
            cleaned, what="the license", neither="Choose a license file or paste its contents."
        )
        if upload:
            # Read one byte past the limit: enough to refuse a big file without loading it.
            data = upload.read(signing.MAX_FILE_BYTES + 1)
        else:
            self.error_field = "text"
            data = text.strip().encode("utf-8")
        try:
            self.claims = signing.verify(
                data,
                settings.LICENSE_PUBLIC_KEY,
                organization=self.organization.slug,
                is_used=license_id_used,
            )
        except signing.LicenseError as error:
            self.add_error(self.error_field, error.reason)
            self.refusal = error
            return cleaned
        self.raw = data.decode("utf-8-sig")
        return cleaned

    @property
    def reason(self) -> str:
        """The sentence that refused the upload (for the audit log)."""
        errors = self.errors.get(self.error_field) or self.non_field_errors()
        return " ".join(errors)

    def save(self, user) -> License:
        """Store the verified license; a concurrent upload of the same id loses cleanly."""
        claims = self.claims
        try:
            with transaction.atomic():
                installed = License.from_claims(
                    self.organization,
                    claims,
                    self.raw,
                    uploaded_by=user if user.is_authenticated else None,
                )
                installed.save()
                return installed
        except IntegrityError:
            self.refusal = signing.already_used(claims.license_id)
            self.add_error(self.error_field, self.refusal.reason)
            return None

    def install(self, user) -> License | None:
        """Validate, store and audit the upload in one transaction (widget and API alike).

        Returns the installed license, or None with the reason in the form's errors.
        """
        with transaction.atomic():
            installed = self.save(user) if self.is_valid() else None
            if installed is None:
                audit.record(
                    self.organization,
                    user,
                    "license.upload",
                    object_type="license",
                    outcome=AuditOutcome.FAILURE,
                    reason=self.reason,
                    code=self.refusal.code if self.refusal else "invalid_form",
                )
            else:
                audit.record(
                    self.organization,
                    user,
                    "license.upload",
                    [installed],
                    license_id=str(installed.license_id),
                    capacity=installed.capacity,
                    valid_from=installed.valid_from.isoformat(),
                    valid_until=installed.valid_until.isoformat(),
                )
        return installed
