"""Organizations, memberships with role groups, invitations, API tokens, the audit log and
its chain head, dashboard layouts."""

import json

from django.conf import settings
from django.db import NotSupportedError, models
from django.db.models import Lookup
from django.utils import timezone

from portal.audit_chain import GENESIS_HASH
from portal.choices import AuditOutcome, Role
from portal.tenancy import OrganizationQuerySet
from portal.validators import validate_name


class Organization(models.Model):
    name = models.CharField(max_length=120, unique=True, validators=[validate_name])
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


class InvitationQuerySet(OrganizationQuerySet):
    def pending(self, now=None):
        now = now or timezone.now()
        return self.filter(
            accepted_at__isnull=True,
            declined_at__isnull=True,
            revoked_at__isnull=True,
            expires_at__gt=now,
        )

    def for_invitee(self, user):
        """Pending invitations addressed to ``user`` (by exact username)."""
        return self.pending().filter(username=user.get_username())


class Invitation(models.Model):
    """An organization's offer of membership to an existing account, until it is accepted.

    Adding an existing account never happens without its owner: an Administrator invites
    a username, the owner sees the invitation in the portal (``/invitations/``) and
    accepts or declines it. See ``portal.membership`` for the rules.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="invitations"
    )
    username = models.CharField(max_length=150)
    roles = models.JSONField(default=list, blank=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    declined_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["username", "expires_at"])]

    def __str__(self):
        return f"Invitation of {self.username} to {self.organization}"

    @property
    def role_labels(self) -> list[str]:
        return [role.label for role in Role if role.value in self.roles]


class ApiToken(models.Model):
    """A REST API token: only its SHA-256 digest is stored (see ``portal.tokens``)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=80, blank=True, validators=[validate_name])
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12, help_text="The key's first characters.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"API token {self.prefix}… of {self.user}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class AuditEntry(models.Model):
    """Who did what to which objects, when, and how it ended: one link of its
    organization's hash chain.

    Written only by ``portal.audit`` (which numbers, dates and hashes it under the
    organization's chain lock) and never changed afterwards: ``verify_audit`` finds any
    entry that was. ``portal.audit_chain`` defines what is hashed; docs/audit-log.md
    says it for outsiders. ``user`` is for filtering and may become NULL when an account
    is deleted; ``actor`` keeps the username the entry was written with, and is hashed.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="audit_entries"
    )
    seq = models.PositiveBigIntegerField(
        "number", help_text="Position in the organization's chain: 1, 2, 3, …"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    actor = models.CharField(max_length=150, blank=True, help_text="Username; empty: the system.")
    action = models.CharField(max_length=60)
    object_type = models.CharField(max_length=60, blank=True)
    object_ids = models.JSONField(default=list, blank=True)
    object_count = models.PositiveIntegerField(default=0)
    outcome = models.CharField(
        max_length=10, choices=AuditOutcome.choices, default=AuditOutcome.SUCCESS
    )
    bulk = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The bulk operation this action started or closed."
    )
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "seq"], name="audit_chain_position"),
        ]
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            # The widget's filters, newest first; a start's closing entry.
            models.Index(
                fields=["organization", "action", "-seq"], name="portal_audi_organiz_action_idx"
            ),
            models.Index(
                fields=["organization", "actor", "-seq"], name="portal_audi_organiz_actor_idx"
            ),
            models.Index(fields=["organization", "bulk"], name="portal_audi_organiz_bulk_idx"),
        ]
        verbose_name_plural = "audit entries"

    def __str__(self):
        when = f"{self.created_at:%Y-%m-%d %H:%M} " if self.created_at else ""
        return f"{when}{self.actor or 'system'} {self.action} ({self.outcome})"


class HasElement(Lookup):
    """``object_ids__has_element=5``: the JSON list holds 5 (a device's entries).

    PostgreSQL answers with jsonb containment; SQLite with its ``json_each`` table
    function. Django's own ``contains`` does not exist for JSON on SQLite.
    """

    lookup_name = "has_element"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        raise NotSupportedError("has_element needs PostgreSQL or SQLite")

    def as_postgresql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} @> %s::jsonb", (*params, json.dumps([self.rhs]))

    def as_sqlite(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return f"EXISTS (SELECT 1 FROM json_each({lhs}) WHERE value = %s)", (*params, self.rhs)


AuditEntry._meta.get_field("object_ids").register_lookup(HasElement)


class AuditChainHead(models.Model):
    """The last link of an organization's audit chain.

    Appending locks this row (``SELECT … FOR UPDATE``) until the transaction commits, so
    two requests recording at once for one organization wait for each other instead of
    both linking to the same predecessor (a fork). It also remembers the last number
    and hash, so that entries deleted from the end of the chain are noticed.
    """

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, primary_key=True, related_name="audit_head"
    )
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self):
        return f"Audit chain of {self.organization_id} at {self.seq}"


class DashboardLayout(models.Model):
    """Which widgets a user keeps open, collapsed, and in what order."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="dashboard_layout"
    )
    layout = models.JSONField(default=dict, blank=True)

    def __str__(self):
        return f"Dashboard layout of {self.user}"
