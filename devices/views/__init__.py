"""Views of the devices app, split by widget."""

from devices.views.devices import DeviceDetailView, DeviceEditView, DeviceListView
from devices.views.events import EventListView, EventRateView
from devices.views.gateways import (
    GatewayCreateView,
    GatewayDeleteView,
    GatewayListView,
    GatewayRotateSecretView,
)
from devices.views.groups import (
    GroupAddDevicesView,
    GroupCreateView,
    GroupDeleteView,
    GroupListView,
    GroupRemoveDevicesView,
    GroupRenameView,
)
from devices.views.operations import (
    DeviceActionView,
    DeviceDeleteView,
    OperationCancelView,
    OperationDetailView,
    OperationListView,
    OperationRetryView,
)

__all__ = [
    "DeviceActionView",
    "DeviceDeleteView",
    "OperationCancelView",
    "OperationDetailView",
    "OperationListView",
    "OperationRetryView",
    "DeviceDetailView",
    "DeviceEditView",
    "DeviceListView",
    "EventListView",
    "EventRateView",
    "GatewayCreateView",
    "GatewayDeleteView",
    "GatewayListView",
    "GatewayRotateSecretView",
    "GroupAddDevicesView",
    "GroupCreateView",
    "GroupDeleteView",
    "GroupListView",
    "GroupRemoveDevicesView",
    "GroupRenameView",
]
