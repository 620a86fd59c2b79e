"""The Firmware widget: the organization's images, the upload area, deleting an image.

Everybody in the organization sees the images; uploading and deleting need the
``device_actions`` rule (loading images is a device action: who may provision may
upload and load), checked here whatever the page showed.
"""

import json

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from firmware import services, uploads
from firmware.choices import ACTIVE_ROLLOUT_STATES
from firmware.forms import ImageUploadForm, accepted_extensions, image_types
from firmware.models import FirmwareImage, Rollout
from portal.htmx import DialogView, render_varying, wants_partial
from portal.tenancy import OrganizationRequiredMixin

PER_PAGE = 10
# Sent with a change, so the widget (and later the Devices widget) re-render.
FIRMWARE_CHANGED = "firmwareChanged"


class FirmwareMixin(OrganizationRequiredMixin):
    def images(self):
        in_use = Rollout.objects.filter(image=OuterRef("pk"), state__in=ACTIVE_ROLLOUT_STATES)
        return (
            self.scoped(FirmwareImage)
            .select_related("uploaded_by")
            .prefetch_related("device_types")
            .annotate(in_use=Exists(in_use))
            .order_by("-id")
        )

    def render_widget(self, form=None, notice="", status=200):
        """The widget body for htmx (the dashboard), the full page otherwise."""
        page = Paginator(self.images(), PER_PAGE).get_page(self.request.GET.get("page"))
        can_upload = self.allows("device_actions")
        if form is None and can_upload:
            form = ImageUploadForm(organization=self.organization)
        types = list(image_types()) if can_upload else []
        context = {
            "page": page,
            "form": form,
            "notice": notice,
            "can_upload": can_upload,
            "max_bytes": uploads.max_image_bytes(),
            "max_size": uploads.mib(uploads.max_image_bytes()),
            "extensions": accepted_extensions(types),
            "type_extensions": {str(t.pk): t.image_extensions for t in types},
            "self_url": reverse("firmware:widget"),
        }
        template = (
            "firmware/_firmware_widget.html"
            if wants_partial(self.request)
            else "firmware/image_list.html"
        )
        return render_varying(self.request, template, context, status=status)


class FirmwareWidgetView(FirmwareMixin, View):
    required_rule = "view"

    def get(self, request):
        return self.render_widget()


@method_decorator(csrf_exempt, name="dispatch")
class UploadView(FirmwareMixin, View):
    """POST multipart: ``file``, ``version``, ``device_types``, ``notes``.

    The cap and the raw-name check are put on the request before its body is read (see
    ``firmware.uploads``), hence the CSRF check inside rather than in the middleware.
    """

    required_rule = "device_actions"

    def post(self, request):
        handler = uploads.prepare(request)
        return self.upload(request, handler)

    @method_decorator(csrf_protect)
    def upload(self, request, handler):
        form = ImageUploadForm(
            request.POST, request.FILES, organization=self.organization, upload=handler
        )
        image = form.upload_image(request.user)
        if image is None:
            return self.render_widget(form, status=400)
        notice = f"Image “{image.filename}” (version {image.version}) uploaded."
        if wants_partial(request):
            return self.render_widget(notice=notice)  # the answer is the fresh widget
        messages.success(request, notice)
        return redirect("firmware:widget")


class DeleteView(DialogView, View):
    """A confirmation dialog; an image an active rollout loads is refused with the reason."""

    required_rule = "device_actions"
    title = "Delete image"
    body_template = "firmware/dialogs/image_delete.html"
    submit_label = "Delete image"
    danger = True

    def get_image(self, pk):
        return get_object_or_404(self.scoped(FirmwareImage), pk=pk)

    def get(self, request, pk):
        image = self.get_image(pk)
        refusal = services.delete_refusal(image)
        return self.render_dialog(image=image, refusal=refusal, blocked=bool(refusal))

    def post(self, request, pk):
        image = self.get_image(pk)
        try:
            services.delete(image, request.user)
        except services.ImageInUse as refusal:
            return self.render_dialog(image=image, refusal=str(refusal), blocked=True)
        response = self.done(f"Image “{image.filename}” (version {image.version}) deleted.")
        if isinstance(response, HttpResponse) and response.status_code == 204:
            trigger = json.loads(response["HX-Trigger"])
            response["HX-Trigger"] = json.dumps({**trigger, FIRMWARE_CHANGED: {}})
        return response
