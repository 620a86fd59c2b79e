"""Organizations, memberships with role groups, the audit log, dashboard layouts."""

from django.conf import settings
from django.db import models

from portal.choices import AuditOutcome, Role
from portal.tenancy import OrganizationQuerySet


class Organization(models.Model):
    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Membership(models.Model):
    """A user in an organization, holding any of the three role groups."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    is_administrator = models.BooleanField("Administrator", default=False)
    is_device_manager = models.BooleanField("Device Manager", default=False)
    is_iot_manager = models.BooleanField("IoT Manager", default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OrganizationQuerySet.as_manager()

    ROLE_FIELDS = {
        Role.ADMINISTRATOR: "is_administrator",
        Role.DEVICE_MANAGER: "is_device_manager",
        Role.IOT_MANAGER: "is_iot_manager",
    }

    class Meta:
        ordering = ["organization__name", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="membership_unique"),
        ]

    def __str__(self):
        return f"{self.user} @ {self.organization}"

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(
            role.value for role, field in self.ROLE_FIELDS.items() if getattr(self, field)
        )

    def set_roles(self, roles):
        roles = {str(role) for role in roles}
        for role, field in self.ROLE_FIELDS.items():
            setattr(self, field, role.value in roles)

    @property
    def role_labels(self) -> list[str]:
        return [role.label for role in Role if role.value in self.roles]


class AuditEntry(models.Model):
    """Who did what to which objects, when, and how it ended."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="audit_entries"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    action = models.CharField(max_length=60)
    object_type = models.CharField(max_length=60, blank=True)
    object_ids = models.JSONField(default=list, blank=True)
    object_count = models.PositiveIntegerField(default=0)
    outcome = models.CharField(
        max_length=10, choices=AuditOutcome.choices, default=AuditOutcome.SUCCESS
    )
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "-created_at"])]
        verbose_name_plural = "audit entries"

    def __str__(self):
        when = f"{self.created_at:%Y-%m-%d %H:%M} " if self.created_at else ""
        return f"{when}{self.user or 'system'} {self.action} ({self.outcome})"


class DashboardLayout(models.Model):
    """Which widgets a user keeps open, collapsed, and in what order."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="dashboard_layout"
    )
    layout = models.JSONField(default=dict, blank=True)

    def __str__(self):
        return f"Dashboard layout of {self.user}"
