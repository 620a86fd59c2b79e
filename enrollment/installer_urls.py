"""The installer's phone pages and the QR label sheets.

No ``app_name``: included from ``enrollment/urls.py`` with
``path("", include("enrollment.installer_urls"))``, so the names live in the
``enrollment:`` namespace (``enrollment:installer-scan``, ``enrollment:labels``, …).
"""

from django.urls import path

from enrollment import installer_views as views

urlpatterns = [
    path("installer/", views.InstallerScanView.as_view(), name="installer-scan"),
    path("installer/nearby/", views.InstallerNearbyView.as_view(), name="installer-nearby"),
    path("installer/enroll/", views.InstallerEnrollView.as_view(), name="installer-enroll"),
    path("installer/<int:pk>/", views.InstallerResultView.as_view(), name="installer-result"),
    path(
        "installer/<int:pk>/status/", views.InstallerStatusView.as_view(), name="installer-status"
    ),
    path("installer/<int:pk>/retry/", views.InstallerRetryView.as_view(), name="installer-retry"),
    path("labels/", views.LabelsView.as_view(), name="labels"),
]
