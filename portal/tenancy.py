"""Organization scoping: the one way every query is narrowed to the user's organization.

The middleware resolves ``request.organization`` and ``request.membership`` once per
request (the session remembers which organization a user with several has chosen).
Every organization-owned model uses ``OrganizationQuerySet``; views, API and admin
reach rows only through ``for_organization`` (views via ``OrganizationRequiredMixin``).
"""

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db import models
from django.shortcuts import render

from portal import navigation, permissions

SESSION_KEY = "fleetgate_organization_id"


class OrganizationQuerySet(models.QuerySet):
    def for_organization(self, organization):
        if organization is None:
            return self.none()
        return self.filter(organization=organization)

    def for_user(self, user):
        """Rows of every organization the user belongs to (for the admin and the API)."""
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(organization__memberships__user=user)


def memberships_of(user):
    from portal.models import Membership

    return list(Membership.objects.filter(user=user).select_related("organization"))


def default_membership(memberships):
    """The membership a user acts in when nothing else says which: their oldest.

    Joining another organization (accepting an invitation) never moves it, so nobody
    finds themselves working in a different organization without having chosen it.
    """
    return min(memberships, key=lambda m: (m.created_at, m.pk)) if memberships else None


def choose_membership(memberships, chosen_organization_id):
    """The membership a user acts in: the one chosen in the session, or the default."""
    for membership in memberships:
        if membership.organization_id == chosen_organization_id:
            return membership
    return default_membership(memberships)


def resolve_membership(request):
    if not request.user.is_authenticated:
        return None
    return choose_membership(request.all_memberships, request.session.get(SESSION_KEY))


class CurrentOrganizationMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        authenticated = request.user.is_authenticated
        request.all_memberships = memberships_of(request.user) if authenticated else []
        request.membership = resolve_membership(request)
        request.organization = request.membership.organization if request.membership else None
        return self.get_response(request)


def roles_of(request) -> frozenset[str]:
    membership = request.membership
    return membership.roles if membership else frozenset()


def switch_organization(request, organization_id: int) -> bool:
    if any(m.organization_id == organization_id for m in request.all_memberships):
        request.session[SESSION_KEY] = organization_id
        return True
    return False


def organization_context(request):
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    roles = roles_of(request)
    return {
        "current_organization": request.organization,
        "current_membership": request.membership,
        "user_memberships": request.all_memberships,
        "can": permissions.capabilities(roles),
        "why": permissions.refusals(roles),
        "nav_links": navigation.links(roles, request.path),
    }


class OrganizationRequiredMixin(LoginRequiredMixin):
    """Views of one organization's data. ``required_rule`` names a rule in permissions."""

    required_rule = "view"

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        if request.membership is None:
            return render(request, "portal/no_organization.html", status=403)
        decision = permissions.decide(self.required_rule, self.roles)
        if not decision:
            raise PermissionDenied(f"Your role groups do not allow this: it {decision.reason}.")
        return super().dispatch(request, *args, **kwargs)

    @property
    def organization(self):
        return self.request.organization

    @property
    def roles(self):
        return roles_of(self.request)

    def scoped(self, model_or_queryset):
        """The one door to organization-owned rows."""
        queryset = getattr(model_or_queryset, "objects", model_or_queryset)
        return queryset.for_organization(self.organization)

    def allows(self, rule: str) -> bool:
        return permissions.allows(rule, self.roles)
