"""Device actions (provision, deprovision, reprovision) and the Operations widget.

Every action opens its preview first — how many devices, seats left afterwards, the
devices that will be skipped and why, the gateways involved — and starts only when
confirmed. ``devices.operations`` does the work; these views only ask and show.
"""

import json

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views import View

from devices import operations
from devices.choices import OperationState
from devices.forms import DeviceActionForm
from devices.lifecycle import Action
from devices.models import BulkOperation, Device, DeviceGroup, Operation
from portal.htmx import (
    GROUPS_CHANGED,
    DialogView,
    WidgetMixin,
    on_own_page,
    render_varying,
    safe_next,
)
from portal.tenancy import OrganizationRequiredMixin

OPERATIONS_CHANGED = "operationsChanged"
RECENT_OPERATIONS = 8
SKIPPED_SHOWN = 50
FAILED_PER_PAGE = 50

VERBS = {
    Action.PROVISION: ("Provision", "provisioned"),
    Action.DEPROVISION: ("Deprovision", "deprovisioned"),
    Action.REPROVISION: ("Reprovision", "reprovisioned"),
}


def plural(count, word="device"):
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def changed(message):
    """204 for htmx: the dialog closes, widgets re-render, the message is shown."""
    response = HttpResponse(status=204)
    response["HX-Trigger"] = json.dumps(
        {GROUPS_CHANGED: {"message": message}, OPERATIONS_CHANGED: {}}
    )
    return response


class DeviceActionView(DialogView, View):
    """GET: the preview. POST: start the bulk operation (one transaction, a few jobs)."""

    required_rule = "device_actions"
    body_template = "devices/dialogs/operation_preview.html"

    def get_form(self, data):
        return DeviceActionForm(
            data,
            devices=self.scoped(Device),
            groups=self.scoped(DeviceGroup),
            actions=operations.BULK_ACTIONS,
        )

    def preview(self, form, error=None):
        the_plan, action = None, form.data.get("action")
        if form.is_valid():
            action = form.cleaned_data["action"]
            the_plan = operations.plan(
                self.organization, action, form.queryset, requested_ids=form.requested_ids
            )
        verb = VERBS.get(action, ("Run", "done"))[0]
        count = len(the_plan.eligible) if the_plan else 0
        blocked = not the_plan or not count or the_plan.over_capacity
        if error:
            form.add_error(None, error)
        return self.render_dialog(
            form=form,
            plan=the_plan,
            verb=verb,
            title=f"{verb} {form.target}" if form.is_valid() else f"{verb} devices",
            submit_label=f"{verb} {plural(count)}" if count else verb,
            danger=action == Action.DEPROVISION,
            blocked=blocked,
            skipped_shown=the_plan.skipped[:SKIPPED_SHOWN] if the_plan else [],
            selected_ids=form.fields["device"].to_python(form.data.getlist("device")),
        )

    def get(self, request):
        return self.preview(self.get_form(request.GET))

    def refused(self, refusal):
        return self.preview(self.get_form(self.request.POST), error=str(refusal))

    def post(self, request):
        form = self.get_form(request.POST)
        if not form.is_valid():
            return self.preview(form)
        action = form.cleaned_data["action"]
        bulk, the_plan = operations.start(
            self.organization,
            request.user,
            action,
            form.queryset,
            form.target,
            requested_ids=form.requested_ids,
        )
        message = f"{VERBS[action][0]}ing {plural(bulk.total)}"
        if the_plan.skipped:
            message += f"; {plural(len(the_plan.skipped))} skipped"
        if the_plan.waiting:
            message += f"; {plural(the_plan.waiting)} wait for an offline gateway"
        message += "."
        if request.htmx:
            return changed(message)
        messages.success(request, message)
        return redirect(safe_next(request))


class BulkObjectMixin:
    def get_bulk(self, pk):
        return get_object_or_404(self.scoped(BulkOperation), pk=pk)


def attach_top_failures(bulks) -> None:
    """Give each bulk operation with failures its most frequent reason (``top_failure``:
    error, code, n), so a list row says why without opening it. One query for the lot.
    """
    failing = [bulk.pk for bulk in bulks if bulk.failed]
    if not failing:
        return
    rows = (
        Operation.objects.filter(bulk_id__in=failing, state=OperationState.FAILED)
        .values("bulk_id", "error", "code")
        .annotate(n=Count("id"))
        .order_by("bulk_id", "-n", "error")
    )
    top = {}
    for row in rows:
        top.setdefault(row["bulk_id"], row)
    for bulk in bulks:
        bulk.top_failure = top.get(bulk.pk)


class OperationListView(WidgetMixin, OrganizationRequiredMixin, View):
    """The Operations widget: recent bulk operations with live progress.

    The header's count is the number of bulk operations (what the list holds), with
    how many still run; four queries whatever the numbers.
    """

    page_template = "devices/operation_list.html"
    widget_template = "devices/_operations_widget.html"

    def get(self, request):
        bulks = self.scoped(BulkOperation)
        page = Paginator(bulks.select_related("created_by"), RECENT_OPERATIONS).get_page(
            request.GET.get("page")
        )
        recent = list(page.object_list)
        attach_top_failures(recent)
        list_url = reverse("devices:operations-widget")
        context = {
            "bulks": recent,
            "page_obj": page,
            "list_url": list_url,
            "standalone": on_own_page(request, list_url),
            "totals": bulks.aggregate(
                all=Count("id"), running=Count("id", filter=Q(finished_at__isnull=True))
            ),
            "open": operations.open_counts(self.organization),
            "self_url": f"{list_url}?page={page.number}",
        }
        return self.render_widget(context)


class OperationDetailView(BulkObjectMixin, OrganizationRequiredMixin, View):
    """One bulk operation: counts, each failed device with its reason, the skipped ones."""

    def get(self, request, pk):
        bulk = self.get_bulk(pk)
        page = Paginator(Operation.objects.failed_of(bulk), FAILED_PER_PAGE).get_page(
            request.GET.get("page")
        )
        context = {"bulk": bulk, "failed_page": page, "verb": VERBS.get(bulk.kind, ("Run",))[0]}
        return render_varying(request, "devices/operation_detail.html", context)


class OperationCancelView(BulkObjectMixin, DialogView, View):
    required_rule = "device_actions"
    title = "Cancel operation"
    body_template = "devices/dialogs/operation_cancel.html"
    submit_label = "Cancel what has not started"
    danger = True

    def get(self, request, pk):
        bulk = self.get_bulk(pk)
        return self.render_dialog(bulk=bulk, open=operations.open_counts(bulk=bulk))

    def post(self, request, pk):
        bulk = self.get_bulk(pk)
        n = operations.cancel(bulk, request.user)
        message = f"Cancelled {plural(n)} not yet sent; devices already sent to finish."
        if request.htmx:
            return changed(message)
        messages.success(request, message)
        return redirect(safe_next(request))


class OperationRetryView(BulkObjectMixin, DialogView, View):
    """Retry every failed device of a bulk operation, or one (``device``)."""

    required_rule = "device_actions"
    title = "Retry failed devices"
    body_template = "devices/dialogs/operation_retry.html"
    submit_label = "Retry"

    def devices(self, request):
        ids = DeviceActionForm.base_fields["device"].to_python(
            request.POST.getlist("device") or request.GET.getlist("device")
        )
        return ids or None

    def get(self, request, pk):
        bulk = self.get_bulk(pk)
        ids = self.devices(request)
        return self.render_dialog(bulk=bulk, count=len(ids) if ids else bulk.failed, ids=ids or [])

    def refused(self, refusal):
        ids = self.devices(self.request) or []
        bulk = self.get_bulk(self.kwargs["pk"])
        return self.render_dialog(bulk=bulk, count=len(ids), ids=ids, error=str(refusal))

    def post(self, request, pk):
        bulk = self.get_bulk(pk)
        ids = self.devices(request)
        again, _plan = operations.retry_failed(bulk, request.user, ids)
        message = f"Retrying {plural(again.total)}."
        if request.htmx:
            return changed(message)
        messages.success(request, message)
        return redirect(reverse("devices:operation-detail", args=[again.pk]))


class DeviceDeleteView(DialogView, View):
    """Delete (unenroll) a device, after a confirmation saying what that means.

    The same rule as enrolling: who may put a device under management may take it out.
    """

    required_rule = "enroll"
    title = "Delete device"
    body_template = "devices/dialogs/device_delete.html"
    submit_label = "Delete and unenroll"
    danger = True

    def get_device(self, pk):
        return get_object_or_404(self.scoped(Device).select_related("gateway"), pk=pk)

    def get(self, request, pk):
        device = self.get_device(pk)
        return self.render_dialog(
            device=device, blocked=Action.DELETE not in device.allowed_actions
        )

    def post(self, request, pk):
        device = self.get_device(pk)
        devices = Device.objects.filter(pk=device.pk)
        if not operations.delete_devices(
            self.organization, request.user, devices, f"device {device.serial_number}"
        ):
            return self.done(f"{device.serial_number} cannot be deleted now ({device.state}).")
        where = (
            f"its gateway {device.gateway.name} sends it the unenrollment"
            if device.gateway
            else "it has no gateway, so it waits as unenroll pending"
        )
        return self.done(f"{device.serial_number} deleted: {where}.")
