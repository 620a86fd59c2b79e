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

from django.contrib import admin
from django.contrib.admin.utils import lookup_spawns_duplicates
from django.db.models import Count
from django.db.models.constants import LOOKUP_SEP

from portal.models import AuditEntry, DashboardLayout, Membership, Organization

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
    model = Membership
    extra = 0
    fields = ["user", "is_administrator", "is_device_manager", "is_iot_manager", "created_at"]
    readonly_fields = ["created_at"]
    raw_id_fields = ["user"]


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


@admin.register(Membership)
class MembershipAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
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
    raw_id_fields = ["user"]
    readonly_fields = ["created_at"]


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
