"""The API's documentation pages (Swagger UI, Redoc), served from local static files.

They describe what the user may do in their organization, so they need a logged-in
user; an anonymous visitor gets the portal's 401 page saying "log in to try the API"
with a way to log in, instead of the bare 401 the schema endpoint answers. Both pages
are our own templates: ``lang`` set, no inline script or style (Swagger UI's start-up
script is fetched from the split view), so a strict Content-Security-Policy fits.
"""

from django.shortcuts import render
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated


class LoginToReadMixin:
    """A DRF docs view whose "not authenticated" is the portal's 401 page (token and
    session users pass as on every other API view)."""

    def handle_exception(self, exc):
        if not isinstance(exc, (NotAuthenticated, AuthenticationFailed)):
            return super().handle_exception(exc)
        response = render(
            self.request._request,
            "401.html",
            {
                "heading": "Log in to try the API",
                "sentence": (
                    "The API documentation lists what you may do in your organization "
                    "and lets you try it, so it needs you logged in."
                ),
            },
            status=401,
        )
        response["WWW-Authenticate"] = "Token"
        return response


class SwaggerView(LoginToReadMixin, SpectacularSwaggerSplitView):
    template_name = "portal/api_swagger.html"


class RedocView(LoginToReadMixin, SpectacularRedocView):
    template_name = "portal/api_redoc.html"
