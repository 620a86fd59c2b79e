from django.urls import path

from licensing import views

app_name = "licensing"

urlpatterns = [
    path("", views.LicensesWidgetView.as_view(), name="widget"),
    path("upload/", views.LicenseUploadView.as_view(), name="upload"),
]
