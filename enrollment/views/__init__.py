"""Views of the enrollment app: the widget and its dialogs (``widget``), the batch
import pages (``batch``) and the installer's phone pages with the label sheets
(``installer``)."""

from enrollment.views.batch import (
    BatchCommitView,
    BatchDefaultTypeView,
    BatchErrorsView,
    BatchNewView,
    BatchProgressView,
)
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
    "BatchDefaultTypeView",
    "BatchErrorsView",
    "BatchNewView",
    "BatchProgressView",
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
