"""The Enrollment widget: records with their status live, enroll one device, retry.

Listing needs the ``view`` rule; enrolling and retrying need ``enroll`` (Administrator,
or both Device Manager and IoT Manager), checked here whatever the page showed.
"""

from django.core.paginator import Paginator
from django.db import IntegrityError
from django.db.models import Count
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views import View

from enrollment import services
from enrollment.choices import EnrollmentStatus
from enrollment.filters import EnrollmentFilterSet
from enrollment.forms import EnrollForm
from enrollment.models import EnrollmentRecord
from portal.htmx import DialogView, WidgetMixin
from portal.tenancy import OrganizationRequiredMixin

PER_PAGE = 25


class EnrollmentWidgetView(WidgetMixin, OrganizationRequiredMixin, View):
    page_template = "enrollment/enrollment_list.html"
    widget_template = "enrollment/_enrollment_widget.html"

    required_rule = "view"

    def get(self, request):
        records = EnrollmentFilterSet(
            request.GET,
            self.scoped(EnrollmentRecord).select_related("device_type", "gateway", "device"),
        )
        status, query = records.value("status"), records.value("q")
        page = Paginator(records.qs.order_by("-id"), PER_PAGE).get_page(request.GET.get("page"))
        counts = dict(
            self.scoped(EnrollmentRecord)
            .order_by()
            .values_list("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
        context = {
            "page": page,
            "status": status,
            "query": query,
            "counts": [(s, label, counts.get(s, 0)) for s, label in EnrollmentStatus.choices],
            "open_count": counts.get("pending", 0) + counts.get("in_progress", 0),
            "total_count": sum(counts.values()),
            "can_enroll": self.allows("enroll"),
            "self_url": reverse("enrollment:widget"),
        }
        return self.render_widget(context)


class EnrollView(DialogView, View):
    """One device through a gateway: the record, then the enrollment sent at once."""

    required_rule = "enroll"
    title = "Enroll a device"
    body_template = "enrollment/dialogs/enroll.html"
    submit_label = "Enroll"
    refusal_note = "Nothing was enrolled."

    def get(self, request):
        return self.render_dialog(form=EnrollForm(organization=self.organization))

    def post(self, request):
        form = self.form = EnrollForm(request.POST, organization=self.organization)
        if not form.is_valid():
            return self.render_dialog(form=form)
        try:
            record = services.enroll_one(self.organization, request.user, form.row())
        except IntegrityError:  # another request for this serial won the race
            form.add_error("serial_number", services.ALREADY_REQUESTED)
            return self.render_dialog(form=form)
        return self.done(f"Enrolling {record.serial_number} through {record.gateway.name}.")


class RetryView(DialogView, View):
    """Failed enrollments go again with the keys they had (one, or every failed one)."""

    required_rule = "enroll"

    def post(self, request, pk=None):
        failed = self.scoped(EnrollmentRecord).filter(status=EnrollmentStatus.FAILED)
        records = [get_object_or_404(failed, pk=pk)] if pk else list(failed)
        bulk = services.retry(self.organization, request.user, records)
        if bulk is None:
            return self.done("Nothing to retry.")
        return self.done(f"Retrying {bulk.total} enrollment{'s' if bulk.total != 1 else ''}.")
