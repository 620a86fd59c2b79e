from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal import member_views, token_views, views

urlpatterns = [
    path("", views.DashboardView.as_view(), name="dashboard"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "organization/switch/", views.SwitchOrganizationView.as_view(), name="switch-organization"
    ),
    path("dashboard/layout/", views.SaveLayoutView.as_view(), name="dashboard-layout"),
    path("members/", include("portal.member_urls")),
    path("audit/", include("portal.audit_urls")),
    path("invitations/", member_views.InvitationListView.as_view(), name="invitations"),
    path("account/tokens/", token_views.TokenListView.as_view(), name="api-tokens"),
    path("devices/", include("devices.urls")),
    path("licenses/", include("licensing.urls")),
    path("enrollment/", include("enrollment.urls")),
    path("firmware/", include("firmware.urls")),
    path("api/v1/", include("portal.api_urls")),
    path("admin/rq/", include("portal.rq_urls")),
    path("admin/", admin.site.urls),
]
