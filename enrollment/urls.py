from django.urls import include, path

from enrollment import views

app_name = "enrollment"

urlpatterns = [
    path("", views.EnrollmentWidgetView.as_view(), name="widget"),
    path("new/", views.EnrollView.as_view(), name="create"),
    path("<int:pk>/retry/", views.RetryView.as_view(), name="retry"),
    path("retry-failed/", views.RetryView.as_view(), name="retry-failed"),
    path("batch/", include("enrollment.batch_urls")),
    path("", include("enrollment.installer_urls")),
]
