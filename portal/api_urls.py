"""The REST API, version 1, mounted at /api/v1/ (schema, Swagger UI and Redoc included).

Each app's routes are included by dotted name, so the portal imports no feature app
itself. The docs pages load Swagger UI and Redoc from the sidecar's static files: they
work with no Internet access.
"""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

app_name = "api"

urlpatterns = [
    path("", include("devices.api")),
    path("", include("licensing.api")),
    path("", include("enrollment.api")),
    path("", include("firmware.api")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path(
        "redoc/",
        # Redoc's stock page fetches web fonts from a CDN; ours does not.
        SpectacularRedocView.as_view(url_name="api:schema", template_name="portal/api_redoc.html"),
        name="redoc",
    ),
]
