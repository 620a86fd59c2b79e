"""The enrollment API's routes, included from ``portal/api_urls.py`` by dotted name."""

from rest_framework.routers import SimpleRouter

from enrollment.api.views import EnrollmentViewSet, NearbyViewSet

router = SimpleRouter()
router.register("enrollments", EnrollmentViewSet, basename="enrollment")
router.register("nearby", NearbyViewSet, basename="nearby")

urlpatterns = router.urls
