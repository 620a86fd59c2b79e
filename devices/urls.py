from django.urls import path

from devices import views

app_name = "devices"

urlpatterns = [
    path("", views.DeviceListView.as_view(), name="widget"),
    path("<int:pk>/", views.DeviceDetailView.as_view(), name="detail"),
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
