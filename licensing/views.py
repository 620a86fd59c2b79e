"""The Licenses widget: seats used of total, the installed licenses, and the upload form.

Everybody in the organization sees the widget; only ``manage_licenses`` (Administrators)
may upload, and the server refuses others with 403 whatever the page showed.
"""

from django.contrib import messages
from django.shortcuts import redirect
from django.utils import timezone
from django.views import View

from licensing import capacity
from licensing.forms import LicenseUploadForm
from portal import tenancy
from portal.htmx import WidgetMixin


class LicensesMixin(WidgetMixin, tenancy.OrganizationRequiredMixin):
    page_template = "licensing/license_list.html"
    widget_template = "licensing/_licenses_widget.html"

    def show(self, form=None, notice=""):
        """The widget body for htmx (the dashboard), the full page otherwise."""
        today = timezone.localdate()
        usage = capacity.usage(self.organization, today=today)
        if form is None and self.allows("manage_licenses"):
            form = LicenseUploadForm(organization=self.organization)
        context = {
            "usage": usage,
            "rows": [(lic, lic.status_on(today)) for lic in usage.licenses],
            "form": form,
            "notice": notice,
        }
        return self.render_widget(context)


class LicensesWidgetView(LicensesMixin, View):
    required_rule = "view"

    def get(self, request):
        return self.show()


class LicenseUploadView(LicensesMixin, View):
    required_rule = "manage_licenses"

    def post(self, request):
        form = LicenseUploadForm(request.POST, request.FILES, organization=self.organization)
        installed = form.install(request.user)
        if installed is None:
            return self.show(form)
        notice = (
            f"License installed: {installed.capacity} devices, "
            f"valid until {installed.valid_until.isoformat()}."
        )
        if request.htmx:
            return self.show(notice=notice)
        messages.success(request, notice)
        return redirect("licensing:widget")
