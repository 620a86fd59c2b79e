"""Batch enrollment routes; included by ``enrollment/urls.py`` under ``batch/``.

No ``app_name`` here: the routes join the ``enrollment`` namespace, hence ``batch-``.
"""

from django.urls import path

from enrollment import batch_views

urlpatterns = [
    path("", batch_views.BatchNewView.as_view(), name="batch-new"),
    path("default-type/", batch_views.BatchDefaultTypeView.as_view(), name="batch-default-type"),
    path("commit/", batch_views.BatchCommitView.as_view(), name="batch-commit"),
    path("<int:pk>/progress/", batch_views.BatchProgressView.as_view(), name="batch-progress"),
    path("rejected/<str:token>.csv", batch_views.BatchErrorsView.as_view(), name="batch-errors"),
]
