"""The enrollment part of the REST API: records, one-device enrollment, app-only
enrollment, installation photos, QR decoding and the devices gateways see nearby.

The installer's phone pages (``enrollment.installer_views``) and this API run the same
code: ``EnrollForm`` validates, ``services.enroll_one`` enrolls, ``photos`` and ``qr`` check the
images. Listing needs the ``view`` rule; everything else needs ``enroll``
(Administrator, or both Device Manager and IoT Manager).

An access key goes in (``access_key``, write-only) and never comes out: no response,
list or error message carries it, and ``decode-qr/`` answers ``has_key: true``.
"""

from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from devices.api import (
    FIELD_ERRORS,
    NOT_FOUND,
    REFUSED,
    ConflictSerializer,
    RefSerializer,
    conflict,
)
from devices.choices import DeviceState
from devices.models import Device, DeviceType, Gateway
from enrollment import photos, qr, services
from enrollment.forms import EnrollForm
from enrollment.models import EnrollmentRecord, EnrollmentStatus
from licensing.capacity import CapacityExceeded
from portal import audit
from portal.api import OrganizationScopedMixin, form_errors

NO_SUCH_TYPE = "No such device type."
NO_SUCH_GATEWAY = "No such gateway in this organization."
NOT_RETRYABLE = "Only a failed enrollment through a gateway can be retried."
NO_PHOTO = "This enrollment has no photo."
NO_FILE = "Choose a file."


# -- the one way to enroll a device (the API and the installer pages) ------------------


def resolve_device_type(value):
    """A device type by name, else by id; None when there is none."""
    value = str(value or "").strip()
    if not value:
        return None
    found = DeviceType.objects.filter(name=value).first()
    if found is None and value.isdigit():
        found = DeviceType.objects.filter(pk=int(value)).first()
    return found


def resolve_gateway(gateways, value):
    """One of ``gateways`` (already scoped) by UID, else by id; None when there is none."""
    value = str(value or "").strip()
    if not value:
        return None
    found = gateways.filter(uid=value).defer("secret").first()
    if found is None and value.isdigit():
        found = gateways.filter(pk=int(value)).defer("secret").first()
    return found


def enrollment_form(organization, data, *, app_only=False) -> EnrollForm:
    """The widget's form, for one device; app-only enrollment has no gateway."""
    form = EnrollForm(data, organization=organization)
    if app_only:
        del form.fields["gateway"]
    return form


# -- serializers ---------------------------------------------------------------------


class GatewayUidRefSerializer(RefSerializer):
    uid = serializers.CharField()


class EnrollmentSerializer(serializers.ModelSerializer):
    """A record; never its access key."""

    status_label = serializers.CharField(source="get_status_display", read_only=True)
    device_type = RefSerializer(read_only=True)
    gateway = GatewayUidRefSerializer(read_only=True, allow_null=True)
    has_photo = serializers.SerializerMethodField()
    photo_url = serializers.SerializerMethodField(help_text="GET it with the same credentials.")

    class Meta:
        model = EnrollmentRecord
        fields = [
            "id",
            "serial_number",
            "name",
            "location_note",
            "device_type",
            "gateway",
            "app_only",
            "status",
            "status_label",
            "reason",
            "device",
            "batch",
            "has_photo",
            "photo_url",
            "created_at",
            "updated_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_has_photo(self, record) -> bool:
        return bool(record.photo)

    @extend_schema_field(OpenApiTypes.STR)
    def get_photo_url(self, record):
        return reverse("api:enrollment-photo", args=[record.pk]) if record.photo else None


class EnrollmentFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=EnrollmentStatus.choices, required=False)
    batch = serializers.IntegerField(min_value=1, required=False, help_text="A batch id.")
    q = serializers.CharField(
        required=False, allow_blank=True, max_length=64, help_text="Part of a serial number."
    )


class AppEnrollmentSerializer(serializers.Serializer):
    """Validated by the Enrollment widget's ``EnrollForm``: one rule everywhere."""

    app_only = True

    serial_number = serializers.CharField(trim_whitespace=False)
    access_key = serializers.CharField(
        write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )
    device_type = serializers.CharField(help_text="A device type's name, or its id.")
    name = serializers.CharField(required=False, allow_blank=True, default="")
    location_note = serializers.CharField(required=False, allow_blank=True, default="")

    def validate(self, attrs):
        organization = self.context["organization"]
        data, errors = dict(attrs), {}
        device_type = resolve_device_type(attrs["device_type"])
        if device_type is None:
            errors["device_type"] = [NO_SUCH_TYPE]
        else:
            data["device_type"] = device_type.pk
        if not self.app_only:
            gateway = resolve_gateway(
                Gateway.objects.for_organization(organization), attrs["gateway"]
            )
            if gateway is None:
                errors["gateway"] = [NO_SUCH_GATEWAY]
            else:
                data["gateway"] = gateway.pk
        form = enrollment_form(organization, data, app_only=self.app_only)
        if not form.is_valid():
            errors = form_errors(form) | errors
        if errors:
            raise serializers.ValidationError(errors)
        return form.row()


class EnrollmentCreateSerializer(AppEnrollmentSerializer):
    app_only = False

    gateway = serializers.CharField(help_text="The gateway's UID, or its id.")


class PhotoSerializer(serializers.Serializer):
    photo = serializers.FileField(
        help_text=f"A JPEG, PNG, WebP… of at most {photos.MAX_UPLOAD_BYTES // 2**20} MB; "
        f"stored re-encoded, at most {photos.MAX_SIDE} px, without metadata (no GPS)."
    )


class QRImageSerializer(serializers.Serializer):
    image = serializers.FileField(help_text="A photo of the device's QR label.")


class DecodedSerializer(serializers.Serializer):
    """What a label says, without its key."""

    serial_number = serializers.CharField()
    device_type = serializers.CharField(help_text="The type's name, as on the label.")
    device_type_id = serializers.IntegerField(
        allow_null=True, help_text="The device type of that name; null when there is none."
    )
    has_key = serializers.BooleanField(help_text="Always true: a valid label carries a key.")
    refusal = serializers.CharField(
        allow_null=True, help_text="Why this serial cannot be enrolled now, or null."
    )


class NearbyDeviceSerializer(serializers.ModelSerializer):
    device_type = RefSerializer(read_only=True)
    gateway = GatewayUidRefSerializer(read_only=True)

    class Meta:
        model = Device
        fields = [
            "id",
            "serial_number",
            "hardware_id",
            "name",
            "device_type",
            "gateway",
            "reported_state",
            "last_seen",
        ]
        read_only_fields = fields


class NearbyFilterSerializer(serializers.Serializer):
    gateway = serializers.CharField(
        required=False, allow_blank=True, help_text="Only this gateway's (UID or id)."
    )


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


def nearby_devices(organization, gateway=None):
    """Devices the organization's gateways report nearby and not enrolled, recent first."""
    devices = (
        Device.objects.for_organization(organization)
        .filter(state=DeviceState.DISCOVERED, gateway__isnull=False)
        .select_related("device_type", "gateway")
        .defer("gateway__secret", "gateway__agent_info", "device_type__image_extensions")
        .order_by(F("last_seen").desc(nulls_last=True), "-id")
    )
    return devices.filter(gateway=gateway) if gateway is not None else devices


CONFLICT = {409: OpenApiResponse(ConflictSerializer, description="Over capacity: nothing stored.")}


class RetryConflictSerializer(ConflictSerializer):
    code = serializers.ChoiceField(choices=["capacity_exceeded", "not_retryable"])


# -- viewsets ------------------------------------------------------------------------


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
        except CapacityExceeded as exc:
            return conflict(exc)
        except IntegrityError:
            raise serializers.ValidationError(
                {"serial_number": [services.ALREADY_REQUESTED]}
            ) from None
        return self.created(record)

    @extend_schema(parameters=[EnrollmentFilterSerializer])
    def list(self, request):
        """Records, newest first; filter by status, batch, part of a serial number."""
        params = EnrollmentFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        values, records = params.validated_data, self.get_queryset()
        if values.get("status"):
            records = records.filter(status=values["status"])
        if values.get("batch"):
            records = records.filter(batch_id=values["batch"])
        if values.get("q"):
            records = records.filter(serial_number__icontains=values["q"].strip())
        page = self.paginate_queryset(records)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

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
        with transaction.atomic():
            photos.attach(record, jpeg)
            audit.record(
                self.organization,
                request.user,
                "enrollment.photo",
                [record.pk],
                object_type="enrollment",
            )
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
        try:
            services.retry(self.organization, request.user, [record])
        except CapacityExceeded as exc:
            return conflict(exc)
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


router = SimpleRouter()
router.register("enrollments", EnrollmentViewSet, basename="enrollment")
router.register("nearby", NearbyViewSet, basename="nearby")

urlpatterns = router.urls
