"""Views of the enrollment app: the widget and its dialogs (``widget``), the batch
import pages (``batch``) and the installer's phone pages with the label sheets
(``installer``)."""

from enrollment.views.batch import BatchCommitView, BatchErrorsView, BatchNewView
from enrollment.views.installer import (
    InstallerEnrollView,
    InstallerNearbyView,
    InstallerResultView,
    InstallerRetryView,
    InstallerScanView,
    InstallerStatusView,
    LabelsView,
)
from enrollment.views.widget import EnrollmentWidgetView, EnrollView, RetryView

__all__ = [
    "BatchCommitView",
    "BatchErrorsView",
    "BatchNewView",
    "EnrollView",
    "EnrollmentWidgetView",
    "InstallerEnrollView",
    "InstallerNearbyView",
    "InstallerResultView",
    "InstallerRetryView",
    "InstallerScanView",
    "InstallerStatusView",
    "LabelsView",
    "RetryView",
]
