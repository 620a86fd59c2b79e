"""The installer's phone pages, and the printable QR label sheets.

Three steps on a narrow screen, each a plain form that works without JavaScript:

1. ``InstallerScanView``: photograph the device's QR label (the camera opens from the
   file input) — the server decodes it — or pick a device a gateway reports nearby.
2. ``InstallerEnrollView``: check the serial and type, take a photo of the installation,
   add a location note, choose the gateway or "enrolled by the app", and enroll.
3. ``InstallerResultView``: the record's status, polled with htmx every 2 s until done
   or failed; a failed one has a Retry button.

The decoded label (with its access key) is kept server-side, encrypted in the session
(``portal.crypto``), never in the HTML: a failed upload is sent again without scanning
or typing anything again. Every page needs the ``enroll`` rule and uses what the API
uses (``enrollment.services.enroll_one``, ``photos``, ``qr``).
"""

import json

from django.db import IntegrityError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views import View

from devices.models import Device, DeviceType, Gateway
from enrollment import labels, photos, qr, services
from enrollment.forms import enrollment_form
from enrollment.models import EnrollmentBatch, EnrollmentRecord
from enrollment.services import nearby_devices
from portal import audit, crypto
from portal.htmx import ConflictMixin
from portal.tenancy import OrganizationRequiredMixin

DRAFT_KEY = "fleetgate_installer_draft"
APP = "app"  # the gateway choice "enrolled by the app itself"
NEARBY_SHOWN = 30
POLL_SECONDS = 2
KEY_KEPT = "The access key from the label is kept; you need not scan it again."


class InstallerMixin(ConflictMixin, OrganizationRequiredMixin):
    required_rule = "enroll"

    # -- the draft: what was scanned or typed, encrypted in the session ---------------

    def draft(self) -> dict:
        token = self.request.session.get(DRAFT_KEY)
        if not token:
            return {}
        try:
            draft = json.loads(crypto.decrypt(token))
        except ValueError:
            return {}
        return draft if draft.get("organization") == self.organization.pk else {}

    def save_draft(self, **values):
        draft = {**self.draft(), **values, "organization": self.organization.pk}
        self.request.session[DRAFT_KEY] = crypto.encrypt(json.dumps(draft))

    def clear_draft(self):
        self.request.session.pop(DRAFT_KEY, None)

    def gateways(self):
        return self.scoped(Gateway).defer("secret", "agent_info").order_by("name")


class InstallerScanView(InstallerMixin, View):
    """Step 1: a photo of the QR label, or a device from the nearby list."""

    def get(self, request):
        return self.page()

    def page(self, error="", status=200):
        context = {
            "error": error,
            "nearby": list(nearby_devices(self.organization)[:NEARBY_SHOWN]),
            "draft": self.draft(),
            "step": 1,
        }
        return render(self.request, "enrollment/installer/scan.html", context, status=status)

    def post(self, request):
        upload = request.FILES.get("image")
        if upload is None:
            return self.page("Take a photo of the device's QR label first.", status=400)
        try:
            payload = qr.decode_image(upload)
        except (photos.PhotoError, qr.PayloadError) as exc:
            return self.page(str(exc), status=400)
        self.clear_draft()
        self.save_draft(
            serial_number=payload.serial_number,
            access_key=payload.access_key,
            device_type=payload.device_type,
            scanned=True,
        )
        return redirect("enrollment:installer-enroll")


class InstallerNearbyView(InstallerMixin, View):
    """The devices gateways see nearby (a partial for htmx refreshes, or a page)."""

    def get(self, request):
        gateway = None
        if value := request.GET.get("gateway", "").strip():
            gateway = get_object_or_404(self.gateways(), pk=value if value.isdigit() else 0)
        context = {
            "nearby": list(nearby_devices(self.organization, gateway)[:NEARBY_SHOWN]),
            "gateway": gateway,
            "gateways": list(self.gateways()),
            "step": 1,
        }
        partial = request.htmx and not request.htmx.history_restore_request
        template = "_nearby.html" if partial else "nearby.html"
        return render(request, f"enrollment/installer/{template}", context)


class InstallerEnrollView(InstallerMixin, View):
    """Steps 2 and 3: details, photo, gateway or app — and enroll."""

    def get(self, request):
        draft, initial = self.draft(), {}
        if device_id := request.GET.get("device", "").strip():
            device = get_object_or_404(
                self.scoped(Device).select_related("device_type"),
                pk=device_id if device_id.isdigit() else 0,
            )
            initial = {
                "serial_number": device.serial_number,
                "device_type": device.device_type_id,
                "gateway": device.gateway_id,
                "name": device.name,
            }
            if draft.get("serial_number") != device.serial_number:
                self.clear_draft()
                self.save_draft(serial_number=device.serial_number)
        elif draft:
            device_type = DeviceType.objects.filter(name=draft.get("device_type", "")).first()
            initial = {
                "serial_number": draft.get("serial_number", ""),
                "device_type": device_type.pk if device_type else None,
            }
        gateways = list(self.gateways())
        if "gateway" not in initial and len(gateways) == 1:
            initial["gateway"] = gateways[0].pk
        form = enrollment_form(self.organization, None)
        form.initial = initial
        return self.page(form, chosen=str(initial.get("gateway") or ""))

    def refused(self, refusal):
        return self.page(self.form, self.chosen, error=f"Not enrolled: {refusal}", status=409)

    def page(self, form, chosen="", photo_error="", error="", status=200):
        draft = self.draft()
        serial = form["serial_number"].value() or ""
        has_key = bool(draft.get("access_key")) and draft.get("serial_number") == serial
        label_type = draft.get("device_type", "") if draft.get("scanned") else ""
        context = {
            "form": form,
            "gateways": list(self.gateways()),
            "chosen": chosen,
            "app_choice": APP,
            "has_key": has_key and "access_key" not in form.errors,
            "key_scanned": bool(draft.get("scanned")),
            "label_type": label_type,
            "label_type_known": DeviceType.objects.filter(name=label_type).exists()
            if label_type
            else True,
            "photo_error": photo_error,
            "error": error,
            "max_mb": photos.MAX_UPLOAD_BYTES // 2**20,
            "step": 2,
        }
        return render(self.request, "enrollment/installer/enroll.html", context, status=status)

    def post(self, request):
        data = request.POST.copy()
        chosen = data.get("gateway", "")
        app_only = chosen == APP
        draft = self.draft()
        serial = (data.get("serial_number") or "").strip()
        has_key = bool(draft.get("access_key")) and draft.get("serial_number") == serial
        if has_key and not data.get("access_key"):
            data["access_key"] = draft["access_key"]
        form = enrollment_form(self.organization, data, app_only=app_only)
        valid = form.is_valid()
        if "access_key" in form.cleaned_data and "serial_number" in form.cleaned_data:
            # Kept for the next try: nobody types or scans a key twice.
            serial, key = form.cleaned_data["serial_number"], form.cleaned_data["access_key"]
            if (draft.get("serial_number"), draft.get("access_key")) != (serial, key):
                self.save_draft(serial_number=serial, access_key=key, scanned=False)
        jpeg, photo_error = None, ""
        if upload := request.FILES.get("photo"):
            try:
                jpeg = photos.clean(upload)
            except photos.PhotoError as exc:
                photo_error = str(exc)
        if not valid or photo_error:
            return self.page(form, chosen, photo_error, status=400)
        self.form, self.chosen = form, chosen
        try:
            record = services.enroll_one(
                self.organization, request.user, form.row(), app_only=app_only
            )
        except IntegrityError:
            return self.page(form, chosen, error=services.ALREADY_REQUESTED, status=409)
        if jpeg is not None:
            services.add_photo(self.organization, request.user, record, jpeg)
        self.clear_draft()
        return redirect("enrollment:installer-result", pk=record.pk)


class RecordMixin(InstallerMixin):
    def record(self, pk):
        return get_object_or_404(
            self.scoped(EnrollmentRecord)
            .select_related("device_type", "gateway", "device")
            .defer("access_key", "gateway__secret", "gateway__agent_info"),
            pk=pk,
        )

    def context(self, record):
        return {
            "record": record,
            "poll_seconds": POLL_SECONDS,
            "photo_url": reverse("api:enrollment-photo", args=[record.pk]) if record.photo else "",
            "step": 3,
        }


class InstallerResultView(RecordMixin, View):
    """The outcome: polled until done or failed; Retry on failure."""

    def get(self, request, pk):
        record = self.record(pk)
        return render(request, "enrollment/installer/result.html", self.context(record))


class InstallerStatusView(RecordMixin, View):
    """The status block alone (htmx polls it; it stops polling once the record is final)."""

    def get(self, request, pk):
        record = self.record(pk)
        return render(request, "enrollment/installer/_status.html", self.context(record))


class InstallerRetryView(RecordMixin, View):
    def post(self, request, pk):
        record = self.record(pk)
        if not record.can_retry:
            return self.answer("Only a failed enrollment through a gateway can be retried.")
        services.retry(self.organization, request.user, [record])
        return self.answer()

    def refused(self, refusal):
        return self.answer(str(refusal))

    def answer(self, error=""):
        pk = self.kwargs["pk"]
        if self.request.htmx:
            context = self.context(self.record(pk)) | {"error": error}
            return render(self.request, "enrollment/installer/_status.html", context)
        if error:
            context = self.context(self.record(pk)) | {"error": error}
            return render(self.request, "enrollment/installer/result.html", context, status=409)
        return redirect("enrollment:installer-result", pk=pk)


class LabelsView(OrganizationRequiredMixin, View):
    """QR labels of a batch (``?batch=``) or of records (``?ids=1,2,3``), as PDF or PNG.

    Labels carry the access keys: the ``enroll`` rule, and an audit entry per sheet.
    Without a selection: a small form to choose one.
    """

    required_rule = "enroll"

    def get(self, request):
        fmt = request.GET.get("format", "pdf")
        batch_id, ids = request.GET.get("batch", "").strip(), request.GET.get("ids", "").strip()
        if not batch_id and not ids:
            return self.form()
        if fmt not in labels.FORMATS:
            return self.form(f"Choose a format among {', '.join(labels.FORMATS)}.", 400)
        records = self.scoped(EnrollmentRecord).select_related("device_type")
        batch = None
        if batch_id:
            if not batch_id.isdigit():
                raise Http404("No such batch.")
            batch = get_object_or_404(self.scoped(EnrollmentBatch), pk=int(batch_id))
            records = records.filter(batch=batch)
        if ids:
            try:
                wanted = {int(part) for part in ids.split(",") if part.strip()}
            except ValueError:
                return self.form("ids is a list of record ids, such as 1,2,3.", 400)
            if len(wanted) > labels.MAX_LABELS:
                return self.form(labels.TOO_MANY, 400)
            records = records.filter(pk__in=wanted)
        records = list(records.order_by("serial_number", "pk")[: labels.MAX_LABELS + 1])
        if not records:
            raise Http404("None of these enrollment records is in this organization.")
        try:
            data = labels.sheet(records, fmt)
        except (labels.LabelError, qr.PayloadError) as exc:
            return self.form(str(exc), 400)
        audit.record(
            self.organization,
            request.user,
            "enrollment.labels",
            [r.pk for r in records],
            object_type="enrollment",
            format=fmt,
            batch=batch.pk if batch else None,
        )
        name = f"labels-batch-{batch.pk}" if batch else f"labels-{len(records)}"
        response = HttpResponse(data, content_type=labels.CONTENT_TYPES[fmt])
        response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
        response["Cache-Control"] = "no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response

    def form(self, error="", status=200):
        context = {
            "batches": list(self.scoped(EnrollmentBatch).order_by("-id")[:50]),
            "error": error,
            "formats": labels.FORMATS,
            "per_page": labels.PER_PAGE,
            "max_labels": labels.MAX_LABELS,
        }
        return render(self.request, "enrollment/installer/labels.html", context, status=status)
