from django.urls import path

from devices import views

app_name = "devices"

urlpatterns = [
    path("", views.DeviceListView.as_view(), name="widget"),
    path("<int:pk>/", views.DeviceDetailView.as_view(), name="detail"),
    path("<int:pk>/edit/", views.DeviceEditView.as_view(), name="edit"),
    path("<int:pk>/delete/", views.DeviceDeleteView.as_view(), name="delete"),
    path("events/", views.EventListView.as_view(), name="events-widget"),
    path("events/rate/", views.EventRateView.as_view(), name="event-rate"),
    path("actions/", views.DeviceActionView.as_view(), name="action"),
    path("operations/", views.OperationListView.as_view(), name="operations-widget"),
    path("operations/<int:pk>/", views.OperationDetailView.as_view(), name="operation-detail"),
    path(
        "operations/<int:pk>/cancel/", views.OperationCancelView.as_view(), name="operation-cancel"
    ),
    path("operations/<int:pk>/retry/", views.OperationRetryView.as_view(), name="operation-retry"),
    path("gateways/", views.GatewayListView.as_view(), name="gateways-widget"),
    path("gateways/new/", views.GatewayCreateView.as_view(), name="gateway-create"),
    path(
        "gateways/<int:pk>/rotate-secret/",
        views.GatewayRotateSecretView.as_view(),
        name="gateway-rotate",
    ),
    path("gateways/<int:pk>/delete/", views.GatewayDeleteView.as_view(), name="gateway-delete"),
    path("groups/", views.GroupListView.as_view(), name="groups-widget"),
    path("groups/new/", views.GroupCreateView.as_view(), name="group-create"),
    path("groups/<int:pk>/rename/", views.GroupRenameView.as_view(), name="group-rename"),
    path("groups/<int:pk>/delete/", views.GroupDeleteView.as_view(), name="group-delete"),
    path("groups/add-devices/", views.GroupAddDevicesView.as_view(), name="group-add-devices"),
    path(
        "groups/remove-devices/",
        views.GroupRemoveDevicesView.as_view(),
        name="group-remove-devices",
    ),
]
