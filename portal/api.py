"""What every API view shares: who is asking, in which organization, under which rule.

The API answers to the same rules as the widgets. The organization is resolved with
``portal.tenancy``'s own functions (the session's choice, else the first membership),
except that a request may name one of the user's organizations in an
``X-Organization`` header (slug or id) — a token client has no session to remember a
choice in. Rows are reached only through ``for_organization``; role checks go through
``portal.permissions.allows``.

Status codes match the widgets': not logged in 401 (the widgets redirect to the login
page instead), no organization or a role that does not allow it 403, another
organization's object 404.
"""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import PermissionDenied
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import BasePermission

from portal import permissions, tenancy

ORGANIZATION_HEADER = "X-Organization"
NO_ORGANIZATION = "You belong to no organization."
NOT_A_MEMBER = f"{ORGANIZATION_HEADER} names no organization you belong to."


def api_membership(request):
    """The membership an authenticated API request acts in, or None when it has none.

    A session-authenticated request reuses what the middleware already loaded; a token
    request was anonymous to the middleware, so its memberships are loaded here.
    """
    django_request = request._request
    if isinstance(request.successful_authenticator, SessionAuthentication) and hasattr(
        django_request, "all_memberships"
    ):
        memberships = django_request.all_memberships  # the middleware's, for this same user
    else:
        memberships = tenancy.memberships_of(request.user)
    chosen = request.headers.get(ORGANIZATION_HEADER, "").strip()
    if chosen:
        named = next(
            (m for m in memberships if chosen in (str(m.organization_id), m.organization.slug)),
            None,
        )
        if named is None:
            raise PermissionDenied(NOT_A_MEMBER)
        return tenancy.choose_membership(memberships, named.organization_id)
    session = getattr(django_request, "session", None)
    chosen_id = session.get(tenancy.SESSION_KEY) if session is not None else None
    return tenancy.choose_membership(memberships, chosen_id)


def form_errors(form) -> dict[str, list[str]]:
    """A Django form's errors as DRF words them: {field: [message, ...]}, "non_field_errors"."""
    return {
        ("non_field_errors" if field == "__all__" else field): list(messages)
        for field, messages in form.errors.items()
    }


class Pagination(PageNumberPagination):
    """Pages of 50 by default; ``page_size`` up to 200, like the widgets' largest page."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class RulePermission(BasePermission):
    """``portal.permissions.allows(view.required_rule, roles)`` in the current organization."""

    message = NO_ORGANIZATION

    def has_permission(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return False  # DRF answers 401 with the WWW-Authenticate challenge
        membership = view.membership
        if membership is None:
            self.message = NO_ORGANIZATION
            return False
        decision = permissions.decide(view.required_rule, membership.roles)
        self.message = f"Your role groups do not allow this: it {decision.reason}."
        return decision.allowed


class OrganizationScopedMixin:
    """For API views of one organization's data: resolves it, checks the rule, scopes rows.

    ``rules`` maps a viewset action to its rule; anything not listed needs ``default_rule``.
    Extra actions may also pass ``required_rule=...`` to ``@action``.
    """

    permission_classes = [RulePermission]
    pagination_class = Pagination
    default_rule = "view"
    rules: dict[str, str] = {}
    membership = None

    @property
    def required_rule(self) -> str:
        return self.__dict__.get("required_rule") or self.rules.get(
            getattr(self, "action", None), self.default_rule
        )

    @required_rule.setter
    def required_rule(self, value):
        # ``@action(required_rule=...)`` sets it on the instance, as DRF does initkwargs.
        self.__dict__["required_rule"] = value

    def check_permissions(self, request):
        # Authentication has run (``request.user`` triggers it); the rule needs the roles.
        if request.user and request.user.is_authenticated:
            self.membership = api_membership(request)
        super().check_permissions(request)

    @property
    def organization(self):
        return self.membership.organization if self.membership else None

    @property
    def roles(self) -> frozenset[str]:
        return self.membership.roles if self.membership else frozenset()

    def allows(self, rule: str) -> bool:
        return permissions.allows(rule, self.roles)

    def scoped(self, model_or_queryset):
        """The one door to organization-owned rows, as in ``OrganizationRequiredMixin``."""
        queryset = getattr(model_or_queryset, "objects", model_or_queryset)
        if getattr(self, "swagger_fake_view", False):
            return queryset.none()  # the schema generator has no request
        return queryset.for_organization(self.organization)

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["organization"] = self.organization
        return context


class ErrorSerializer(serializers.Serializer):
    """What a refusal looks like (401, 403, 404): a sentence."""

    detail = serializers.CharField()


class AutoSchema(SpectacularAutoSchema):
    """Documents the ``X-Organization`` header on every organization-scoped operation."""

    def get_override_parameters(self):
        parameters = super().get_override_parameters()
        if isinstance(self.view, OrganizationScopedMixin):
            parameters = [
                *parameters,
                OpenApiParameter(
                    ORGANIZATION_HEADER,
                    str,
                    OpenApiParameter.HEADER,
                    description=(
                        "The organization to act in, by slug or id, among yours. Without "
                        "it: the one chosen in the portal (session), else your first."
                    ),
                ),
            ]
        return parameters
