from django.urls import path

from portal import audit_views

app_name = "audit"

urlpatterns = [
    path("", audit_views.AuditLogView.as_view(), name="log"),
    path("export.csv", audit_views.AuditExportView.as_view(), name="export"),
]
