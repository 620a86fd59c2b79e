"""Django admin for support staff, and the admin mixin every app's admin reuses.

``OrganizationScopedAdminMixin`` does two things for any ModelAdmin:

* **Scoping.** Superusers see every row; other staff see only rows of organizations
  they are members of, through ``OrganizationQuerySet.for_user`` where the model has
  it. Foreign-key and many-to-many choices are narrowed the same way, so a staff
  member cannot attach a row to another organization's gateway or group.
* **Masked secrets.** A ModelAdmin lists its secret fields in ``masked_fields``. They
  never reach a form, a list column, a search or a query-string filter; the change
  page shows "••••" (or "not set") in their place, read-only.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import lookup_spawns_duplicates
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count
from django.db.models.constants import LOOKUP_SEP
from django_rq.admin import QueueAdmin
from django_rq.models import Dashboard

from portal import membership as rules
from portal.choices import Role
from portal.models import (
    ApiToken,
    AuditEntry,
    DashboardLayout,
    Invitation,
    Membership,
    Organization,
)

MASK = "••••"
MASK_SUFFIX = "_masked"


def organizations_for(user):
    """The organizations whose rows ``user`` may see in the admin."""
    if not user.is_authenticated or not user.is_active:
        return Organization.objects.none()
    if user.is_superuser:
        return Organization.objects.all()
    return Organization.objects.filter(memberships__user=user)


def scope_for_user(queryset, user, lookup="organization"):
    """Narrow ``queryset`` to ``user``'s organizations; ``lookup`` leads from a row to one.

    Organization-owned models carry ``OrganizationQuerySet`` and use its ``for_user``;
    the few models outside it (organizations themselves, memberships, the audit log,
    layouts) are narrowed through ``lookup`` with the same meaning.
    """
    if lookup is None:  # a catalogue shared by every organization
        return queryset
    if lookup == "organization" and hasattr(queryset, "for_user"):
        return queryset.for_user(user)
    if user.is_active and user.is_superuser:
        return queryset
    queryset = queryset.filter(**{f"{lookup}__in": organizations_for(user)})
    if lookup_spawns_duplicates(queryset.model._meta, lookup):
        queryset = queryset.distinct()
    return queryset


def _is_masked_path(path, masked) -> bool:
    """Does a search field or lookup ("^secret", "secret__startswith") touch a masked field?"""
    return path.lstrip("^=@").split(LOOKUP_SEP)[0] in masked


class MaskedFieldsMixin:
    """Secrets shown as "••••", read-only, and kept out of lists, search and filters.

    Declare ``masked_fields = ("secret",)`` on the ModelAdmin (or inline). In explicit
    ``fields``/``fieldsets`` keep writing the real name; it is swapped for its mask.
    """

    masked_fields: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.masked_fields:
            setattr(self, name + MASK_SUFFIX, self._mask_display(name))

    def _mask_display(self, name):
        label = self.model._meta.get_field(name).verbose_name

        @admin.display(description=label)
        def show(obj):
            return MASK if getattr(obj, name, None) else "not set"

        return show

    def _swap_masked(self, names):
        return [
            name + MASK_SUFFIX if isinstance(name, str) and name in self.masked_fields else name
            for name in names
        ]

    def get_exclude(self, request, obj=None):
        excluded = list(super().get_exclude(request, obj) or ())
        return [*excluded, *(n for n in self.masked_fields if n not in excluded)] or None

    def get_readonly_fields(self, request, obj=None):
        # A masked name listed here too would render the plaintext: swap it for its mask.
        readonly = self._swap_masked(super().get_readonly_fields(request, obj))
        masks = [name + MASK_SUFFIX for name in self.masked_fields]
        return list(dict.fromkeys([*readonly, *masks]))

    def get_fields(self, request, obj=None):
        fields = self._swap_masked(super().get_fields(request, obj))
        return list(dict.fromkeys(fields))  # a mask listed twice would render twice

    def get_fieldsets(self, request, obj=None):
        if not self.fieldsets:
            return super().get_fieldsets(request, obj)
        return [
            (title, {**options, "fields": self._swap_masked(options["fields"])})
            for title, options in super().get_fieldsets(request, obj)
        ]

    def get_list_display(self, request):
        return [f for f in super().get_list_display(request) if f not in self.masked_fields]

    def get_list_filter(self, request):
        def field_of(item):
            return item[0] if isinstance(item, (list, tuple)) else item

        return [
            item
            for item in super().get_list_filter(request)
            if not (
                isinstance(field_of(item), str)
                and _is_masked_path(field_of(item), self.masked_fields)
            )
        ]

    def get_search_fields(self, request):
        return [
            f
            for f in super().get_search_fields(request)
            if not _is_masked_path(f, self.masked_fields)
        ]

    def lookup_allowed(self, lookup, value, request):
        # Django allows any local-field lookup in the query string; for a secret that
        # would be an oracle (?secret__startswith=a).
        if _is_masked_path(lookup, self.masked_fields):
            return False
        return super().lookup_allowed(lookup, value, request)


class OrganizationScopedAdminMixin(MaskedFieldsMixin):
    """Rows and choices narrowed to the organizations the staff user belongs to.

    ``organization_lookup`` leads from the model to its Organization ("pk" for
    Organization itself; None for a catalogue shared by every organization).
    """

    organization_lookup: str | None = "organization"

    def get_queryset(self, request):
        return scope_for_user(super().get_queryset(request), request.user, self.organization_lookup)

    def scoped_choices(self, db_field, request):
        """The rows a relation may point at, or None to leave Django's default."""
        model = db_field.remote_field.model
        if model is Organization:
            return organizations_for(request.user)
        queryset = model._default_manager.all()
        if hasattr(queryset, "for_user"):
            return queryset.for_user(request.user)
        return None

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if "queryset" not in kwargs:
            choices = self.scoped_choices(db_field, request)
            if choices is not None:
                kwargs["queryset"] = choices
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if "queryset" not in kwargs:
            choices = self.scoped_choices(db_field, request)
            if choices is not None:
                kwargs["queryset"] = choices
        return super().formfield_for_manytomany(db_field, request, **kwargs)


def superuser_only(request) -> bool:
    return request.user.is_active and request.user.is_superuser


class MembershipInline(admin.TabularInline):
    """Read-only here: role changes go through the Membership page (``portal.membership``)."""

    model = Membership
    extra = 0
    fields = ["user", "is_administrator", "is_device_manager", "is_iot_manager", "created_at"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Organization)
class OrganizationAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    organization_lookup = "pk"
    list_display = ["name", "slug", "member_count", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at"]
    inlines = [MembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="members", ordering="member_count")
    def member_count(self, obj):
        return obj.member_count

    def has_add_permission(self, request):
        # Staff would not see an organization they are not a member of.
        return superuser_only(request)

    def has_delete_permission(self, request, obj=None):
        # Deleting an organization deletes everything it owns, its audit log included.
        return superuser_only(request)


class MembershipRolesForm(forms.ModelForm):
    """The role checkboxes, checked by ``portal.membership``'s rules before saving."""

    class Meta:
        model = Membership
        fields = ["is_administrator", "is_device_manager", "is_iot_manager"]

    def roles(self) -> frozenset[str]:
        fields = Membership.ROLE_FIELDS
        return frozenset(role.value for role in Role if self.cleaned_data.get(fields[role]))

    def clean(self):
        cleaned = super().clean()
        membership, actor = self.instance, self.actor
        if not rules.may_manage(actor, membership.organization):
            raise forms.ValidationError(
                f"Only an Administrator of {membership.organization} may change its members."
            )
        current = Membership.objects.get(pk=membership.pk)
        if rules.leaves_no_administrator(current, self.roles()):
            raise forms.ValidationError(
                rules.last_administrator_message(current, actor, removing=False)
            )
        return cleaned


@admin.register(Membership)
class MembershipAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    """Support changes role groups here under the portal's rules, audited like the portal.

    Nobody is added here: existing accounts join by invitation, new ones are created by
    an organization's Administrator in the portal.
    """

    form = MembershipRolesForm
    list_display = [
        "user",
        "organization",
        "is_administrator",
        "is_device_manager",
        "is_iot_manager",
        "created_at",
    ]
    list_filter = [
        ("organization", admin.RelatedOnlyFieldListFilter),
        "is_administrator",
        "is_device_manager",
        "is_iot_manager",
    ]
    search_fields = ["user__username", "user__email", "organization__name"]
    list_select_related = ["user", "organization"]
    fields = ["user", "organization", "is_administrator", "is_device_manager", "is_iot_manager"]
    readonly_fields = ["user", "organization", "created_at"]
    actions = None  # a bulk delete would skip the last-Administrator rule

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        if not super().has_delete_permission(request, obj):
            return False
        if obj is None:
            return True
        return rules.may_manage(request.user, obj.organization) and not (
            rules.leaves_no_administrator(obj)
        )

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.actor = request.user
        return form

    def save_model(self, request, obj, form, change):
        try:
            rules.change_roles(request.user, obj, form.roles())
        except rules.Refused as refusal:  # lost a race with another change
            messages.error(request, str(refusal))

    def delete_model(self, request, obj):
        rules.remove(request.user, obj)


@admin.register(Invitation)
class InvitationAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    """Read-only: invitations are made, accepted and withdrawn in the portal."""

    list_display = ["username", "organization", "created_at", "expires_at", "accepted_at"]
    list_filter = [("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["username", "organization__name"]
    list_select_related = ["organization"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Support sees which tokens exist and may revoke them; never a key (only digests exist)."""

    list_display = ["user", "name", "prefix", "created_at", "expires_at", "revoked_at"]
    search_fields = ["user__username", "name", "prefix"]
    list_select_related = ["user"]
    exclude = ["digest"]
    readonly_fields = ["user", "name", "prefix", "created_at", "expires_at", "last_used_at"]
    actions = ["revoke"]

    def has_module_permission(self, request):
        return superuser_only(request)

    def has_view_permission(self, request, obj=None):
        return superuser_only(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return superuser_only(request)

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        from django.utils import timezone

        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        messages.success(request, f"Revoked {count} tokens.")


@admin.register(AuditEntry)
class AuditEntryAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    """The audit log is evidence: support reads it, nobody edits it."""

    list_display = [
        "created_at",
        "organization",
        "user",
        "action",
        "object_type",
        "object_count",
        "outcome",
    ]
    list_filter = ["outcome", ("organization", admin.RelatedOnlyFieldListFilter), "action"]
    search_fields = ["action", "object_type", "user__username"]
    list_select_related = ["organization", "user"]
    date_hierarchy = "created_at"
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DashboardLayout)
class DashboardLayoutAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    organization_lookup = "user__memberships__organization"
    list_display = ["user"]
    search_fields = ["user__username"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]


class ScopedUserAdmin(UserAdmin):
    """Accounts, scoped like everything else: staff see the users of their organizations.

    Only superusers change accounts here (and flags like ``is_staff``); other staff look
    them up read-only, so no staff member can raise their own rights, reset an
    Administrator's password or create accounts outside an organization.
    """

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if superuser_only(request):
            return queryset
        return queryset.filter(
            memberships__organization__in=organizations_for(request.user)
        ).distinct()

    def has_add_permission(self, request):
        return superuser_only(request)

    def has_change_permission(self, request, obj=None):
        return superuser_only(request)

    def has_delete_permission(self, request, obj=None):
        return superuser_only(request)


class SuperuserQueueAdmin(QueueAdmin):
    """django-rq's dashboard inside the admin, for superusers only (every tenant's jobs)."""

    def has_module_permission(self, request):
        return superuser_only(request)

    def has_view_permission(self, request, obj=None):
        return superuser_only(request)

    def has_change_permission(self, request, obj=None):
        return superuser_only(request)

    def get_urls(self):
        from portal.rq_urls import guard

        return guard(super().get_urls())


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, ScopedUserAdmin)
admin.site.register(Dashboard, SuperuserQueueAdmin)
