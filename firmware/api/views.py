"""The firmware part of the REST API: images (upload, list, detail, delete when unused).

Uploads go through ``firmware.forms.ImageUploadForm`` — the Firmware widget's own
validation, storage and audit — so a file the widget refuses, the API refuses with the
same sentence; the size cap and the raw file name are put on the request before its
body is read (``firmware.uploads``). Listing needs the ``view`` rule; uploading and
deleting need ``device_actions``.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.response import Response

from devices.models import DeviceType
from firmware import services, uploads
from firmware.api.serializers import (
    DuplicateImageSerializer,
    FirmwareImageSerializer,
    FirmwareImageUploadSerializer,
)
from firmware.forms import ImageUploadForm
from firmware.models import FirmwareImage
from portal.api import REFUSED, ErrorSerializer, OrganizationScopedMixin, form_errors

NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such image here.")}


@extend_schema(tags=["firmware"])
class ImageViewSet(
    OrganizationScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Firmware images of the organization."""

    serializer_class = FirmwareImageSerializer
    parser_classes = [uploads.ImageApiParser]
    rules = {"create": "device_actions", "destroy": "device_actions"}

    def get_queryset(self):
        return (
            self.scoped(FirmwareImage)
            .select_related("uploaded_by")
            .prefetch_related("device_types")
            .order_by("-id")
        )

    def initialize_request(self, request, *args, **kwargs):
        drf_request = super().initialize_request(request, *args, **kwargs)
        if request.method == "POST":  # before authentication's CSRF check reads the body
            uploads.prepare(request)
        return drf_request

    @extend_schema(
        request={"multipart/form-data": FirmwareImageUploadSerializer},
        responses={
            201: FirmwareImageSerializer,
            400: OpenApiResponse(
                OpenApiTypes.OBJECT, description="Refused, with the reason: {field: [message]}."
            ),
            409: OpenApiResponse(
                DuplicateImageSerializer,
                description="These bytes are an image already; not stored.",
            ),
            **REFUSED,
        },
    )
    def create(self, request):
        """Upload an image (multipart): checked, hashed, stored once per organization."""
        data = request.POST.copy()  # the fields; the file stays in request.FILES, uncopied
        data.setlist("device_types", self._type_ids(data.getlist("device_types")))
        form = ImageUploadForm(
            data,
            request.FILES,
            organization=self.organization,
            upload=getattr(request._request, "image_upload", None),
        )
        image = form.upload_image(request.user)
        if image is None:
            if form.duplicate is not None:
                body = {
                    "detail": services.duplicate_message(form.duplicate),
                    "image": FirmwareImageSerializer(form.duplicate).data,
                }
                return Response(body, status=status.HTTP_409_CONFLICT)
            return Response(form_errors(form), status=status.HTTP_400_BAD_REQUEST)
        return Response(self.get_serializer(image).data, status=status.HTTP_201_CREATED)

    @staticmethod
    def _type_ids(values):
        """Names (or ids) to ids for the form; an unknown name stays, to be refused."""
        found = dict(DeviceType.objects.filter(name__in=values).values_list("name", "pk"))
        return [str(found.get(v, v)) for v in values]

    @extend_schema(
        responses={
            204: None,
            409: OpenApiResponse(ErrorSerializer, description="In use: the reason."),
            **REFUSED,
            **NOT_FOUND,
        }
    )
    def destroy(self, request, pk=None):
        """Delete an image no active rollout loads (refused with the reason otherwise)."""
        image = self.get_object()
        try:
            services.delete(image, request.user)
        except services.ImageInUse as refusal:
            return Response({"detail": str(refusal)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)
