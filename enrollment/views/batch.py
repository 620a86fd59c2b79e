"""Batch enrollment pages: upload or paste a list → preview → commit → rejected rows.

Keys never reach the page. Between the preview and the commit the list stays on the
server, in the user's session: the raw bytes compressed and encrypted with the
portal's field key (``portal.crypto``), under a random token that the preview's
Commit button carries. The session is the store every process of the portal shares
(the database by default); a cache may be per process. Once committed, the session
keeps only the rejected rows — without keys — for the download.
"""

import base64
import json
import secrets
import time
import zlib

from django.contrib import messages
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views import View

from devices.models import DeviceType, Gateway
from enrollment import batch
from enrollment.forms import BatchForm
from portal import crypto, exports
from portal.forms_too_big import limit_text
from portal.htmx import render_varying, wants_partial
from portal.tenancy import OrganizationRequiredMixin

SESSION_KEY = "enrollment_batch"
PREVIEW_TTL = 3600  # seconds a preview can be committed
INVALID_SHOWN = 50
VALID_SHOWN = 10
EXPIRED = "This preview has expired or was replaced by another one: import the list again."


def _seal(data: bytes) -> str:
    return crypto.fernet().encrypt(zlib.compress(data, 6)).decode("ascii")


def _unseal(token: str) -> bytes:
    return zlib.decompress(crypto.fernet().decrypt(token.encode("ascii")))


class BatchMixin(OrganizationRequiredMixin):
    required_rule = "enroll"

    def render_step(self, template, context, status=200):
        context["step_template"] = template
        partial = wants_partial(self.request)
        page = template if partial else "enrollment/batch_page.html"
        # htmx swaps only 2xx answers: a refusal it should show comes as 200.
        response = render_varying(self.request, page, context, status=200 if partial else status)
        add_never_cache_headers(response)
        return response

    def entry(self, token: str) -> dict:
        """The session's stored list for this token, in this organization, or 404."""
        entry = self.request.session.get(SESSION_KEY)
        if (
            not entry
            or not token
            or not secrets.compare_digest(entry["token"], str(token))
            or entry["organization"] != self.organization.pk
            or (entry.get("sealed") and time.time() - entry["created"] > PREVIEW_TTL)
        ):
            raise Http404(EXPIRED)
        return entry

    def defaults(self, entry):
        device_type = gateway = None
        if entry.get("device_type"):
            device_type = DeviceType.objects.filter(pk=entry["device_type"]).first()
        if entry.get("gateway"):
            gateway = self.scoped(Gateway).defer("secret").filter(pk=entry["gateway"]).first()
        return device_type, gateway

    def preview_context(self, entry, checked, error=""):
        device_type, gateway = self.defaults(entry)
        invalid = checked.invalid
        valid = checked.valid
        return {
            "token": entry["token"],
            "source": entry["source"],
            "total": len(checked.rows),
            "valid_count": len(valid),
            "invalid_count": len(invalid),
            "through_gateways": checked.through_gateways,
            "for_app": len(valid) - checked.through_gateways,
            "invalid_rows": invalid[:INVALID_SHOWN],
            "valid_rows": valid[:VALID_SHOWN],
            "header": checked.header,
            "default_type": device_type,
            "default_gateway": gateway,
            "error": error,
            "key_omitted": batch.KEY_OMITTED,
        }


class BatchNewView(BatchMixin, View):
    """The form (GET), and the preview of a posted list (POST).

    A refused list is never echoed back: the form comes back empty with the reasons, so
    the pasted access keys do not travel back into the page (and the browser's history).
    """

    handles_too_big_forms = True  # portal.forms_too_big

    def get(self, request):
        form = BatchForm(organization=self.organization)
        return self.render_step("enrollment/batch_form.html", {"form": form})

    def refused(self, errors, status, form=None):
        """The form again, empty but for the chosen defaults, with the reasons above it."""
        initial = {}
        if form is not None:
            initial = {
                name: form.cleaned_data[name]
                for name in ("device_type", "gateway")
                if form.cleaned_data.get(name) is not None
            }
        fresh = BatchForm(organization=self.organization, initial=initial)
        pasted = bool(self.request.POST.get("text")) or hasattr(self.request, "form_too_big")
        context = {"form": fresh, "errors": errors, "pasted": pasted}
        return self.render_step("enrollment/batch_form.html", context, status=status)

    def post(self, request):
        if limit := getattr(request, "form_too_big", None):
            return self.refused(
                [
                    f"The pasted list is larger than {limit_text(limit)}, the most a form "
                    f"field takes. Upload it as a file instead (up to "
                    f"{batch.MAX_BYTES // 1024 // 1024} MB), or paste it in parts."
                ],
                status=413,
            )
        try:
            form = BatchForm(request.POST, request.FILES, organization=self.organization)
            valid = form.is_valid()
        except RequestDataTooBig:  # Django's count of form fields, if reached here
            return self.refused([f"The pasted list is larger than {limit_text()}."], 413)
        if not valid:
            errors = [
                f"{form.fields[name].label}: {error}" if name in form.fields else error
                for name, messages in form.errors.items()
                for error in messages
            ]
            return self.refused(errors, 400, form)
        device_type = form.cleaned_data.get("device_type")
        gateway = form.cleaned_data.get("gateway")
        checked = batch.check(
            self.organization, form.parsed, device_type=device_type, gateway=gateway
        )
        entry = {
            "token": secrets.token_urlsafe(16),
            "organization": self.organization.pk,
            "created": time.time(),
            "source": form.cleaned_data["source"],
            "device_type": device_type.pk if device_type else None,
            "gateway": gateway.pk if gateway else None,
            "sealed": _seal(form.data_bytes),
        }
        request.session[SESSION_KEY] = entry
        return self.render_step(
            "enrollment/batch_preview.html", self.preview_context(entry, checked)
        )


class BatchCommitView(BatchMixin, View):
    """Re-check and store the previewed list; send what has a gateway."""

    def post(self, request):
        entry = self.entry(request.POST.get("token", ""))
        if not entry.get("sealed"):
            messages.info(request, "This list was imported already.")
            return redirect("enrollment:batch-new")
        device_type, gateway = self.defaults(entry)
        parsed = batch.parse(_unseal(entry["sealed"]))
        try:
            committed = batch.commit(
                self.organization,
                request.user,
                parsed,
                source=entry["source"],
                device_type=device_type,
                gateway=gateway,
            )
        except (batch.NothingToImport, DatabaseError) as error:
            reason = (
                str(error)
                if isinstance(error, batch.NothingToImport)
                else "The import failed and nothing was stored (another import may have "
                "added some of these serials meanwhile). Check the list again."
            )
            checked = batch.check(
                self.organization, parsed, device_type=device_type, gateway=gateway
            )
            return self.render_step(
                "enrollment/batch_preview.html",
                self.preview_context(entry, checked, error=reason),
                status=409,
            )
        sent = batch.send(self.organization, request.user, committed.records)
        invalid = committed.checked.invalid
        # The keys leave the session; only the rejected rows (keyless) stay, for the download.
        request.session[SESSION_KEY] = {
            "token": entry["token"],
            "organization": self.organization.pk,
            "created": entry["created"],
            "source": entry["source"],
            "batch": committed.batch.pk,
            "errors": base64.b64encode(
                zlib.compress(json.dumps(batch.error_rows(invalid)).encode("utf-8"), 6)
            ).decode("ascii"),
        }
        context = {
            "token": entry["token"],
            "batch": committed.batch,
            "sent": sent,
            "invalid_rows": invalid[:INVALID_SHOWN],
            "invalid_count": len(invalid),
            "key_omitted": batch.KEY_OMITTED,
            "widget_url": reverse("enrollment:widget"),
        }
        return self.render_step("enrollment/batch_result.html", context)


class BatchErrorsView(BatchMixin, View):
    """The rejected rows as CSV: checked now for a preview, as committed for an import."""

    def get(self, request, token):
        entry = self.entry(token)
        if entry.get("sealed"):
            device_type, gateway = self.defaults(entry)
            checked = batch.check(
                self.organization,
                batch.parse(_unseal(entry["sealed"])),
                device_type=device_type,
                gateway=gateway,
            )
            rows = batch.error_rows(checked.invalid)
        else:
            rows = json.loads(zlib.decompress(base64.b64decode(entry["errors"])))
        return exports.response("enrollment-rejected-rows.csv", batch.ERROR_COLUMNS, rows)
