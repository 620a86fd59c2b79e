from django.urls import path

from firmware.views import download, images

app_name = "firmware"

urlpatterns = [
    path("", images.FirmwareWidgetView.as_view(), name="widget"),
    path("upload/", images.UploadView.as_view(), name="upload"),
    path("images/<int:pk>/delete/", images.DeleteView.as_view(), name="image-delete"),
    path("images/<int:pk>/download/", download.DownloadView.as_view(), name="download"),
]
