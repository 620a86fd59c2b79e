"""The devices API's routes, included from ``portal/api_urls.py`` by dotted name."""

from rest_framework.routers import SimpleRouter

from devices.api.views import BulkOperationViewSet, DeviceViewSet, GatewayViewSet, GroupViewSet

router = SimpleRouter()
router.register("devices", DeviceViewSet, basename="device")
router.register("groups", GroupViewSet, basename="group")
router.register("gateways", GatewayViewSet, basename="gateway")
router.register("operations", BulkOperationViewSet, basename="operation")

urlpatterns = router.urls
