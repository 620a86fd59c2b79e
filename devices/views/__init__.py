"""Views of the devices app, split by widget."""

from devices.views.devices import DeviceDetailView, DeviceListView
from devices.views.groups import (
    GroupAddDevicesView,
    GroupCreateView,
    GroupDeleteView,
    GroupListView,
    GroupRemoveDevicesView,
    GroupRenameView,
)

__all__ = [
    "DeviceDetailView",
    "DeviceListView",
    "GroupAddDevicesView",
    "GroupCreateView",
    "GroupDeleteView",
    "GroupListView",
    "GroupRemoveDevicesView",
    "GroupRenameView",
]
