"""The enrollment part of the REST API: records, one-device enrollment, app-only
enrollment, installation photos, QR decoding and the devices gateways see nearby.

The installer's phone pages (``enrollment.views.installer``) and this API run the same
code: ``EnrollForm`` validates, ``services.enroll_one`` enrolls, ``photos`` and ``qr`` check the
images. Listing needs the ``view`` rule; everything else needs ``enroll``
(Administrator, or both Device Manager and IoT Manager).

An access key goes in (``access_key``, write-only) and never comes out: no response,
list or error message carries it, and ``decode-qr/`` answers ``has_key: true``.
"""

from django.db import IntegrityError
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from devices.models import DeviceType, Gateway
from enrollment import photos, qr, services
from enrollment.api.schema import CONFLICT, NO_FILE, NO_PHOTO, NO_SUCH_GATEWAY, NOT_RETRYABLE
from enrollment.api.serializers import (
    AppEnrollmentSerializer,
    DecodedSerializer,
    EnrollmentCreateSerializer,
    EnrollmentSerializer,
    NearbyDeviceSerializer,
    NearbyFilterSerializer,
    PhotoSerializer,
    QRImageSerializer,
    RetryConflictSerializer,
)
from enrollment.filters import EnrollmentFilterSet
from enrollment.forms import resolve_gateway
from enrollment.models import EnrollmentRecord
from enrollment.services import nearby_devices
from portal.api import FIELD_ERRORS, NOT_FOUND, REFUSED, OrganizationScopedMixin


def file_error(field, message):
    return Response({field: [message]}, status=status.HTTP_400_BAD_REQUEST)


def decoded(organization, payload: qr.Payload) -> dict:
    device_type = DeviceType.objects.filter(name=payload.device_type).only("pk").first()
    refusal = services.refusals(organization, [payload.serial_number]).get(payload.serial_number)
    return {
        "serial_number": payload.serial_number,
        "device_type": payload.device_type,
        "device_type_id": device_type.pk if device_type else None,
        "has_key": True,
        "refusal": refusal,
    }


@extend_schema(tags=["enrollment"])
class EnrollmentViewSet(
    OrganizationScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Enrollment records: enroll one device through a gateway, record an app's own
    enrollment, add the installation photo, retry a failed one, read a QR label."""

    serializer_class = EnrollmentSerializer
    filterset_class = EnrollmentFilterSet
    default_rule = "enroll"
    rules = {"list": "view", "retrieve": "view", "photo_file": "view"}

    def get_queryset(self):
        return (
            self.scoped(EnrollmentRecord)
            .select_related("device_type", "gateway")
            .defer("access_key", "gateway__secret", "gateway__agent_info")
            .order_by("-id")
        )

    def created(self, record):
        record = self.get_queryset().get(pk=record.pk)
        location = reverse("api:enrollment-detail", args=[record.pk])
        return Response(
            self.get_serializer(record).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": location},
        )

    def enroll(self, serializer_class):
        body = serializer_class(data=self.request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        try:
            record = services.enroll_one(
                self.organization,
                self.request.user,
                body.validated_data,
                app_only=serializer_class.app_only,
            )
        except IntegrityError:
            raise serializers.ValidationError(
                {"serial_number": [services.ALREADY_REQUESTED]}
            ) from None
        return self.created(record)

    def list(self, request, *args, **kwargs):
        """Records, newest first; filter by status, batch, part of a serial number."""
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=EnrollmentCreateSerializer,
        responses={
            201: OpenApiResponse(
                EnrollmentSerializer, description="Recorded and sent to the gateway."
            ),
            **FIELD_ERRORS,
            **REFUSED,
            **CONFLICT,
        },
    )
    def create(self, request):
        """Enroll one device through a gateway: the record, sent at once.

        The answer has the record without its key; poll it until ``status`` is ``done``
        or ``failed``.
        """
        return self.enroll(EnrollmentCreateSerializer)

    @extend_schema(
        request=AppEnrollmentSerializer,
        responses={
            201: OpenApiResponse(EnrollmentSerializer, description="Recorded as done."),
            **FIELD_ERRORS,
            **REFUSED,
            **CONFLICT,
        },
    )
    @action(detail=False, methods=["post"], url_path="app", url_name="app")
    def app(self, request):
        """The installer app enrolled the device itself (BLE), no gateway involved.

        The device is under management at once (a seat taken) and the record is done.
        """
        return self.enroll(AppEnrollmentSerializer)

    @extend_schema(
        request={"multipart/form-data": PhotoSerializer},
        responses={200: EnrollmentSerializer, **FIELD_ERRORS, **REFUSED, **NOT_FOUND},
    )
    @action(detail=True, methods=["post"], parser_classes=[MultiPartParser, FormParser])
    def photo(self, request, pk=None):
        """Add (or replace) the installation photo; it is stored without any metadata."""
        record = self.get_object()
        upload = request.FILES.get("photo")
        if upload is None:
            return file_error("photo", NO_FILE)
        try:
            jpeg = photos.clean(upload)
        except photos.PhotoError as exc:
            return file_error("photo", str(exc))
        services.add_photo(self.organization, request.user, record, jpeg)
        return Response(self.get_serializer(record).data)

    @extend_schema(
        responses={
            (200, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY, description="The photo."),
            **REFUSED,
            **NOT_FOUND,
        }
    )
    @photo.mapping.get
    def photo_file(self, request, pk=None):
        """The installation photo (JPEG), for anyone of the organization."""
        record = self.get_object()
        if not record.photo:
            return Response({"detail": NO_PHOTO}, status=status.HTTP_404_NOT_FOUND)
        try:
            file = record.photo.open("rb")
        except FileNotFoundError:
            return Response({"detail": NO_PHOTO}, status=status.HTTP_404_NOT_FOUND)
        response = FileResponse(file, content_type="image/jpeg")
        response["Cache-Control"] = "private, max-age=3600"
        response["X-Content-Type-Options"] = "nosniff"
        return response

    @extend_schema(
        request=None,
        responses={
            200: EnrollmentSerializer,
            **REFUSED,
            **NOT_FOUND,
            409: OpenApiResponse(
                RetryConflictSerializer,
                description="Not a failed gateway enrollment, or over capacity.",
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """Send a failed enrollment again, with the key it had."""
        record = self.get_object()
        if not record.can_retry:
            return Response(
                {"detail": NOT_RETRYABLE, "code": "not_retryable"},
                status=status.HTTP_409_CONFLICT,
            )
        services.retry(self.organization, request.user, [record])
        return Response(self.get_serializer(self.get_queryset().get(pk=record.pk)).data)

    @extend_schema(
        request={"multipart/form-data": QRImageSerializer},
        responses={200: DecodedSerializer, **FIELD_ERRORS, **REFUSED},
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="decode-qr",
        url_name="decode-qr",
        parser_classes=[MultiPartParser, FormParser],
    )
    def decode_qr(self, request):
        """Read the QR label in a photo: serial and type (never the key). Nothing is stored."""
        upload = request.FILES.get("image")
        if upload is None:
            return file_error("image", NO_FILE)
        try:
            payload = qr.decode_image(upload)
        except (photos.PhotoError, qr.PayloadError) as exc:
            return file_error("image", str(exc))
        return Response(decoded(self.organization, payload))


@extend_schema(tags=["enrollment"])
class NearbyViewSet(OrganizationScopedMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Devices the organization's gateways discovered and nobody enrolled yet."""

    serializer_class = NearbyDeviceSerializer
    default_rule = "enroll"

    def get_queryset(self):
        return nearby_devices(self.organization)

    @extend_schema(
        parameters=[NearbyFilterSerializer],
        responses={200: NearbyDeviceSerializer(many=True), **FIELD_ERRORS, **REFUSED},
    )
    def list(self, request):
        """Recently seen first; ``?gateway=`` for one gateway's."""
        params = NearbyFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        gateway = None
        if value := params.validated_data.get("gateway"):
            gateway = resolve_gateway(self.scoped(Gateway), value)
            if gateway is None:
                raise serializers.ValidationError({"gateway": [NO_SUCH_GATEWAY]})
        page = self.paginate_queryset(nearby_devices(self.organization, gateway))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)
