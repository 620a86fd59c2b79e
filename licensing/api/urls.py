"""The licensing API's routes, included from ``portal/api_urls.py`` by dotted name."""

from rest_framework.routers import SimpleRouter

from licensing.api.views import LicenseViewSet

router = SimpleRouter()
router.register("licenses", LicenseViewSet, basename="license")

urlpatterns = router.urls
