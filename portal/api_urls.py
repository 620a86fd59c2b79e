"""The REST API, version 1, mounted at /api/v1/ (schema, Swagger UI and Redoc included).

Each app's routes are included by dotted name, so the portal imports no feature app
itself. The docs pages load Swagger UI and Redoc from the sidecar's static files: they
work with no Internet access.
"""

from django.conf import settings
from django.urls import include, path
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override
from drf_spectacular.views import SpectacularAPIView

from portal.api import TokenLoginView
from portal.api_docs import RedocView, SwaggerView

# Redoc's bundle writes its own <style> elements and runs its search in a Web Worker from
# a blob: URL; the rest of its policy is the portal's. (A nonce in style-src would make
# browsers ignore 'unsafe-inline', so this page's style-src has none.)
REDOC_CSP = {
    **settings.SECURE_CSP,
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "worker-src": [CSP.SELF, "blob:"],
    "img-src": [CSP.SELF, "data:", "blob:"],
}

app_name = "api"

urlpatterns = [
    path("", include("devices.api.urls")),
    path("", include("licensing.api.urls")),
    path("", include("enrollment.api.urls")),
    path("", include("firmware.api.urls")),
    path("auth/token/", TokenLoginView.as_view(), name="token-login"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SwaggerView.as_view(url_name="api:schema"), name="docs"),
    # Redoc's stock page fetches web fonts from a CDN; ours does not.
    path("redoc/", csp_override(REDOC_CSP)(RedocView.as_view(url_name="api:schema")), name="redoc"),
]
