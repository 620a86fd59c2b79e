"""The firmware API's routes, included from ``portal/api_urls.py`` by dotted name."""

from rest_framework.routers import SimpleRouter

from firmware.api.views import ImageViewSet

router = SimpleRouter()
router.register("firmware/images", ImageViewSet, basename="firmware-image")

urlpatterns = router.urls
