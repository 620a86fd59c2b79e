from django.urls import path

from enrollment import views

app_name = "enrollment"

urlpatterns = [
    path("", views.EnrollmentWidgetView.as_view(), name="widget"),
    path("new/", views.EnrollView.as_view(), name="create"),
    path("<int:pk>/retry/", views.RetryView.as_view(), name="retry"),
    path("retry-failed/", views.RetryView.as_view(), name="retry-failed"),
    # The batch import
    path("batch/", views.BatchNewView.as_view(), name="batch-new"),
    path("batch/commit/", views.BatchCommitView.as_view(), name="batch-commit"),
    path("batch/rejected/<str:token>.csv", views.BatchErrorsView.as_view(), name="batch-errors"),
    # The installer's phone pages and the QR label sheets
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
