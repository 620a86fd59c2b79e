"""What every API view shares: who is asking, in which organization, under which rule.

The API answers to the same rules as the widgets. A request may name one of the
user's organizations in an ``X-Organization`` header (slug or id). Without it, a
session-authenticated request acts where the portal does (``portal.tenancy``: the
session's choice, else the user's oldest membership); a token request — which has no
session to remember a choice in — acts in the user's only organization, and a user of
several must name one (400, with the slugs to choose from): a token call is never
ambiguous. Rows are reached only through ``for_organization``; role checks go through
``portal.permissions.allows``.

Status codes match the widgets': not logged in 401 (the widgets redirect to the login
page instead), no organization or a role that does not allow it 403, another
organization's object 404, an organization left unnamed 400.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException, PermissionDenied
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from portal import permissions, tenancy
from portal.errors import Conflict
from portal.filters import FilterBackend

ORGANIZATION_HEADER = "X-Organization"
NO_ORGANIZATION = "You belong to no organization."
NOT_A_MEMBER = f"{ORGANIZATION_HEADER} names no organization you belong to."


class OrganizationNotNamed(APIException):
    status_code = 400
    default_code = "organization_required"


def not_named(memberships) -> OrganizationNotNamed:
    choices = ", ".join(
        f"{m.organization.slug} ({m.organization_id})"
        for m in sorted(memberships, key=lambda m: m.organization.slug)
    )
    return OrganizationNotNamed(
        f"You belong to several organizations: name one in the {ORGANIZATION_HEADER} "
        f"header, by slug or id — {choices}."
    )


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
    if not isinstance(request.successful_authenticator, SessionAuthentication):
        if len(memberships) > 1:
            raise not_named(memberships)
        return memberships[0] if memberships else None
    return tenancy.choose_membership(memberships, django_request.session.get(tenancy.SESSION_KEY))


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
    filter_backends = [FilterBackend]  # lists with a ``filterset_class`` (portal.filters)
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

    def filter_queryset(self, queryset):
        """Filters narrow lists; a detail URL's object is found whatever the query says."""
        return super().filter_queryset(queryset) if self.action == "list" else queryset


class ErrorSerializer(serializers.Serializer):
    """What a refusal looks like (401, 403, 404): a sentence."""

    detail = serializers.CharField()


# The answers every app's endpoints share, for their ``extend_schema(responses=...)``.
REFUSED = {
    401: OpenApiResponse(ErrorSerializer, description="Not logged in, or a bad token."),
    403: OpenApiResponse(
        ErrorSerializer, description="No organization, or a role that forbids it."
    ),
}
NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="Not in this organization.")}
FIELD_ERRORS = {
    400: OpenApiResponse(OpenApiTypes.OBJECT, description="Field errors: {field: [message, ...]}.")
}


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
                        "The organization to act in, by slug or id, among yours. Required "
                        "with a token when you belong to several (400 otherwise); with the "
                        "portal's session it defaults to the organization chosen there."
                    ),
                ),
            ]
        return parameters


def name_enums(**overrides: str) -> None:
    """Name an app's choice sets in the OpenAPI schema: ``name_enums(DeviceStateEnum=
    "devices.choices.DeviceState")``, called from the app's ``AppConfig.ready``.

    Two fields called ``state`` with different choices would otherwise get names made up
    by drf-spectacular; the settings name no app's modules, so each app adds its own
    entries (as drf-spectacular's own contrib modules do).
    """
    from drf_spectacular.settings import spectacular_settings

    spectacular_settings.ENUM_NAME_OVERRIDES.update(overrides)


def exception_handler(exc, context):
    """DRF's handler, plus: a ``portal.errors.Conflict`` (over capacity, nothing to do)
    is a 409 with its sentence, its ``code`` and its details, from every endpoint."""
    if isinstance(exc, Conflict):
        return Response({"detail": str(exc), "code": exc.code, **exc.details()}, status=409)
    return drf_exception_handler(exc, context)


class TokenLoginSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)
    name = serializers.CharField(
        required=False, default="", max_length=80, help_text="What the token is for."
    )


class IssuedTokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Shown only in this answer.")
    expires_at = serializers.DateTimeField()


class TokenLoginView(APIView):
    """Trade a username and password for a new API token (the installer app's login).

    Throttled like every login (django-axes, ``portal.auth_backends``): after a few wrong
    passwords the pair of username and address gets 429 for a while, right password or not.
    """

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        request=TokenLoginSerializer,
        responses={201: IssuedTokenSerializer, 400: ErrorSerializer, 429: ErrorSerializer},
        auth=[],
    )
    def post(self, request):
        from django.contrib.auth import authenticate

        from portal import tokens
        from portal.validators import validate_name

        data = TokenLoginSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(
            request._request,
            username=data.validated_data["username"],
            password=data.validated_data["password"],
        )
        if user is None:
            # Locked out: AxesMiddleware replaces this answer with its 429.
            return Response({"detail": "Wrong username or password."}, status=400)
        name = data.validated_data["name"] or "token login"
        try:
            validate_name(name)
        except DjangoValidationError as error:
            raise serializers.ValidationError({"name": error.messages}) from None
        token, key = tokens.issue(user, name=name)
        return Response({"token": key, "expires_at": token.expires_at}, status=201)
