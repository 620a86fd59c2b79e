"""Installed capacity licenses: one row per verified license file."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from portal.models import Organization
from portal.tenancy import OrganizationQuerySet


class LicenseQuerySet(OrganizationQuerySet):
    def valid_on(self, day=None):
        """Licenses whose validity period contains ``day`` (default: today, local time)."""
        day = day or timezone.localdate()
        return self.filter(valid_from__lte=day, valid_until__gte=day)


class License(models.Model):
    """A verified license file as uploaded; the fields repeat what the signed file says.

    Rows are only ever created from a verified file (``licensing.forms``); the admin
    shows them read-only, since editing a copied field would bypass the signature.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="licenses"
    )
    license_id = models.UUIDField(
        "license id", unique=True, help_text="Each license file may be installed once, anywhere."
    )
    capacity = models.PositiveIntegerField(help_text="Devices this license allows.")
    valid_from = models.DateField(help_text="First valid day.")
    valid_until = models.DateField(help_text="Last valid day.")
    issued_at = models.DateTimeField()
    raw = models.TextField("license file", help_text="The signed file exactly as uploaded.")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    uploaded_at = models.DateTimeField(auto_now_add=True)

    objects = LicenseQuerySet.as_manager()

    class Meta:
        ordering = ["-valid_until", "-uploaded_at", "-id"]
        indexes = [models.Index(fields=["organization", "valid_until", "valid_from"])]
        constraints = [
            models.CheckConstraint(condition=Q(capacity__gt=0), name="license_capacity_positive"),
            models.CheckConstraint(
                condition=Q(valid_until__gte=F("valid_from")), name="license_period_ordered"
            ),
        ]

    def __str__(self):
        return f"{self.capacity} devices, {self.valid_from} – {self.valid_until}"

    @classmethod
    def from_claims(cls, organization, claims, raw: str, **fields) -> "License":
        """The row (not saved yet) for a file that ``licensing.signing.verify`` accepted."""
        return cls(
            organization=organization,
            license_id=claims.license_id,
            capacity=claims.capacity,
            valid_from=claims.valid_from,
            valid_until=claims.valid_until,
            issued_at=claims.issued_at,
            raw=raw,
            **fields,
        )

    def status_on(self, day=None) -> str:
        """ "valid", "expired" or "not yet valid" — the same rule as ``valid_on``."""
        day = day or timezone.localdate()
        if day < self.valid_from:
            return "not yet valid"
        if day > self.valid_until:
            return "expired"
        return "valid"

    @property
    def status(self) -> str:
        return self.status_on()
