"""Device actions (provision, deprovision, reprovision) and the Operations widget.

Every action opens its preview first — how many devices, seats left afterwards, the
devices that will be skipped and why, the gateways involved — and starts only when
confirmed. ``devices.operations`` does the work; these views only ask and show.
"""

import json

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views import View

from devices import operations, unenrollment
from devices.forms import DeviceActionForm
from devices.lifecycle import Action
from devices.models import BulkOperation, Device, DeviceGroup, Operation, OperationState
from devices.views.base import GROUPS_CHANGED, DialogView, render_varying, safe_next, wants_partial
from licensing.capacity import CapacityExceeded
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

    def post(self, request):
        form = self.get_form(request.POST)
        if not form.is_valid():
            return self.preview(form)
        action = form.cleaned_data["action"]
        try:
            bulk, the_plan = operations.start(
                self.organization,
                request.user,
                action,
                form.queryset,
                form.target,
                requested_ids=form.requested_ids,
            )
        except (CapacityExceeded, operations.NothingToDo) as exc:
            return self.preview(self.get_form(request.POST), error=str(exc))
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


class OperationListView(OrganizationRequiredMixin, View):
    """The Operations widget: recent bulk operations with live progress (one query)."""

    def get(self, request):
        recent = list(self.scoped(BulkOperation).select_related("created_by")[:RECENT_OPERATIONS])
        context = {
            "bulks": recent,
            "open": operations.open_counts(self.organization),
            "self_url": reverse("devices:operations-widget"),
        }
        template = (
            "devices/_operations_widget.html"
            if wants_partial(request)
            else "devices/operation_list.html"
        )
        return render_varying(request, template, context)


class OperationDetailView(BulkObjectMixin, OrganizationRequiredMixin, View):
    """One bulk operation: counts, each failed device with its reason, the skipped ones."""

    def get(self, request, pk):
        bulk = self.get_bulk(pk)
        failed = (
            Operation.objects.filter(bulk=bulk, state=OperationState.FAILED)
            .select_related("device", "gateway")
            .only(
                "uid",
                "generation",
                "device__serial_number",
                "device__state",
                "gateway__name",
                "code",
                "error",
                "attempts",
                "finished_at",
            )
            .order_by("id")
        )
        page = Paginator(failed, FAILED_PER_PAGE).get_page(request.GET.get("page"))
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

    def post(self, request, pk):
        bulk = self.get_bulk(pk)
        ids = self.devices(request)
        try:
            again, _plan = operations.retry_failed(bulk, request.user, ids)
        except (CapacityExceeded, operations.NothingToDo) as exc:
            return self.render_dialog(
                bulk=bulk, count=len(ids or []), ids=ids or [], error=str(exc)
            )
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
        if not unenrollment.delete_devices(
            self.organization, request.user, devices, f"device {device.serial_number}"
        ):
            return self.done(f"{device.serial_number} cannot be deleted now ({device.state}).")
        where = (
            f"its gateway {device.gateway.name} sends it the unenrollment"
            if device.gateway
            else "it has no gateway, so it waits as unenroll pending"
        )
        return self.done(f"{device.serial_number} deleted: {where}.")
