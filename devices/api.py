"""The devices part of the REST API: devices, groups, gateways, bulk operations, actions.

Thin like the widget views: rows come through ``portal.api.OrganizationScopedMixin``
(``self.scoped``), device actions through ``devices.operations`` (which asks
``devices.lifecycle``), selections through ``devices.forms`` — the same code paths as
the widgets, so the API cannot drift from them. Lists cost a constant number of queries.
"""

from functools import partial

from django.db import transaction
from django.db.models import Count, Prefetch, Q
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from devices import operations
from devices.choices import DeviceState
from devices.filters import MAX_SEARCH_LENGTH, SORTS, DeviceFilter, Facets, KeysFirstPaginator
from devices.forms import (
    MAX_SELECTION,
    DeviceActionForm,
    GroupForm,
    Selection,
    add_to_group,
    remove_from_group,
)
from devices.models import (
    BulkOperation,
    Device,
    DeviceGroup,
    DeviceType,
    Gateway,
    Operation,
    OperationState,
)
from licensing.capacity import CapacityExceeded
from portal import audit
from portal.api import ErrorSerializer, OrganizationScopedMixin, Pagination, form_errors

RECENT_OPERATIONS = 10
FAILED_SHOWN = 100  # in a bulk operation's detail; ``failures/`` pages through all of them
TOO_MANY = f"Give at most {MAX_SELECTION:,} devices at a time."
NO_SUCH_GROUP = "No such group in this organization."
# Never loaded by a device page: the gateway's secret would be decrypted once per row.
DEVICE_DEFERRED = ("gateway__secret", "gateway__agent_info", "device_type__image_extensions")

REFUSED = {
    401: OpenApiResponse(ErrorSerializer, description="Not logged in, or a bad token."),
    403: OpenApiResponse(
        ErrorSerializer, description="No organization, or a role that forbids it."
    ),
}
NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="Not in this organization.")}
FIELD_ERRORS = {
    400: OpenApiResponse(OpenApiTypes.OBJECT, description="Field errors: {field: [message, ...]}.")
}


def device_ids_field(**kwargs):
    return serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        allow_empty=False,
        max_length=MAX_SELECTION,
        error_messages={"max_length": TOO_MANY},
        **kwargs,
    )


def groups_prefetch():
    # A plain list per device, read by the serializer without a related manager each.
    return Prefetch("groups", queryset=DeviceGroup.objects.only("pk", "name"), to_attr="group_list")


# -- serializers ---------------------------------------------------------------------


class RefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class GatewayRefSerializer(RefSerializer):
    is_online = serializers.BooleanField()


class SkippedSerializer(serializers.Serializer):
    """A device an action left out, and why (the lifecycle's sentence, or not found)."""

    id = serializers.IntegerField()
    serial = serializers.CharField()
    reason = serializers.CharField()


WIRE_ID_HELP = "The operation id its gateway sees (docs/gateway-protocol.md, section 6)."
FAILURE_FIELDS = ("code", "error", "attempts", "finished_at")


class OperationSerializer(serializers.ModelSerializer):
    """One device's part of a bulk operation."""

    wire_id = serializers.CharField(read_only=True, help_text=WIRE_ID_HELP)

    class Meta:
        model = Operation
        fields = [
            "id",
            "wire_id",
            "bulk",
            "device",
            "kind",
            "state",
            "attempts",
            "code",
            "error",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class DeviceSerializer(serializers.ModelSerializer):
    state_label = serializers.CharField(source="get_state_display", read_only=True)
    device_type = RefSerializer(read_only=True)
    gateway = GatewayRefSerializer(read_only=True, allow_null=True)
    groups = RefSerializer(source="group_list", many=True, read_only=True)
    actions = serializers.SerializerMethodField(help_text="The actions its state allows now.")

    class Meta:
        model = Device
        fields = [
            "id",
            "serial_number",
            "name",
            "hardware_id",
            "state",
            "state_label",
            "device_type",
            "gateway",
            "groups",
            "location",
            "actions",
            "last_seen",
            "state_changed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(
        serializers.ListField(
            child=serializers.ChoiceField(choices=[a.value for a in operations.BULK_ACTIONS])
        )
    )
    def get_actions(self, device):
        allowed = device.allowed_actions
        return [a.value for a in operations.BULK_ACTIONS if a in allowed]


class DeviceDetailSerializer(DeviceSerializer):
    recent_operations = OperationSerializer(many=True, read_only=True)

    class Meta(DeviceSerializer.Meta):
        fields = [*DeviceSerializer.Meta.fields, "recent_operations"]
        read_only_fields = fields


class DeviceFilterSerializer(serializers.Serializer):
    """The Devices widget's filters (``devices.filters.DeviceFilter``), strictly checked."""

    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=MAX_SEARCH_LENGTH,
        help_text="Part of a serial number, MAC/UID or name.",
    )
    state = serializers.ChoiceField(choices=DeviceState.choices, required=False)
    type = serializers.IntegerField(min_value=1, required=False, help_text="A device type id.")
    gateway = serializers.IntegerField(min_value=1, required=False, help_text="A gateway id.")
    group = serializers.IntegerField(min_value=1, required=False, help_text="A group id.")
    sort = serializers.ChoiceField(
        choices=[*SORTS, *(f"-{key}" for key in SORTS)],
        required=False,
        help_text="A column, '-' first for descending. Default: serial.",
    )


class GroupSerializer(serializers.ModelSerializer):
    """Validated by the Groups widget's ``GroupForm``: one rule for names everywhere."""

    device_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = DeviceGroup
        fields = ["id", "name", "description", "device_count", "created_at"]
        read_only_fields = ["id", "device_count", "created_at"]

    def validate(self, attrs):
        instance = self.instance or DeviceGroup(organization=self.context["organization"])
        data = {
            "name": attrs.get("name", instance.name),
            "description": attrs.get("description", instance.description),
        }
        self.form = GroupForm(data, instance=instance)
        if not self.form.is_valid():
            raise serializers.ValidationError(form_errors(self.form))
        return self.form.cleaned_data

    def save(self, **kwargs):
        group = self.form.save_or_error()  # a lost race on the name is the same field error
        if group is None:
            raise serializers.ValidationError(form_errors(self.form))
        self.instance = group
        return group


class DeviceIdsSerializer(serializers.Serializer):
    devices = device_ids_field(help_text=f"Device ids, at most {MAX_SELECTION:,}.")


class MembershipChangeSerializer(serializers.Serializer):
    changed = serializers.ListField(
        child=serializers.IntegerField(), help_text="Ids added to (or removed from) the group."
    )
    unchanged = serializers.IntegerField(
        help_text="Devices already in the group (adding) or not in it (removing)."
    )
    not_found = serializers.ListField(
        child=serializers.IntegerField(), help_text="Ids of no device in this organization."
    )


class GatewaySerializer(serializers.ModelSerializer):
    """Never the secret: it leaves the portal only when the Gateways widget makes one."""

    device_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Gateway
        fields = [
            "id",
            "uid",
            "name",
            "is_online",
            "last_seen",
            "agent_info",
            "secret_rotated_at",
            "created_at",
            "device_count",
        ]
        read_only_fields = fields


class GatewayFilterSerializer(serializers.Serializer):
    q = serializers.CharField(
        required=False, allow_blank=True, max_length=100, help_text="Part of a name or UID."
    )
    status = serializers.ChoiceField(choices=["online", "offline"], required=False)


class BulkOperationSerializer(serializers.ModelSerializer):
    kind_label = serializers.CharField(source="get_kind_display", read_only=True)
    created_by = serializers.SerializerMethodField()
    running = serializers.BooleanField(source="is_running", read_only=True)
    percent = serializers.IntegerField(read_only=True)
    skipped_count = serializers.SerializerMethodField()

    class Meta:
        model = BulkOperation
        fields = [
            "id",
            "kind",
            "kind_label",
            "target",
            "created_by",
            "created_at",
            "finished_at",
            "total",
            "done",
            "failed",
            "cancelled",
            "running",
            "percent",
            "skipped_count",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_created_by(self, bulk):
        return bulk.created_by.get_username() if bulk.created_by else None

    @extend_schema_field(serializers.IntegerField())
    def get_skipped_count(self, bulk):
        return len(bulk.skipped)


class FailureSerializer(serializers.ModelSerializer):
    """A failed device of a bulk operation, with the gateway's reason."""

    serial_number = serializers.CharField(source="device.serial_number", read_only=True)
    wire_id = serializers.CharField(read_only=True, help_text=WIRE_ID_HELP)

    class Meta:
        model = Operation
        fields = ["device", "serial_number", "wire_id", "code", "error", "attempts", "finished_at"]
        read_only_fields = fields


class OpenCountsSerializer(serializers.Serializer):
    queued = serializers.IntegerField()
    sent = serializers.IntegerField()
    open = serializers.IntegerField()


class BulkOperationDetailSerializer(BulkOperationSerializer):
    skipped = SkippedSerializer(many=True, read_only=True)
    open = OpenCountsSerializer(read_only=True, help_text="Operations not finished yet.")
    failed_devices = FailureSerializer(
        many=True, read_only=True, help_text=f"The first {FAILED_SHOWN}; see failures/."
    )

    class Meta(BulkOperationSerializer.Meta):
        fields = [*BulkOperationSerializer.Meta.fields, "skipped", "open", "failed_devices"]
        read_only_fields = fields


class DeviceActionSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=[(a.value, a.label) for a in operations.BULK_ACTIONS])
    devices = device_ids_field(required=False, help_text="Device ids; or give group.")
    group = serializers.IntegerField(min_value=1, required=False, help_text="A group id.")
    preview = serializers.BooleanField(
        default=False, help_text="Only say what would happen; start nothing."
    )

    def validate(self, attrs):
        if "devices" in attrs and "group" in attrs:
            raise serializers.ValidationError("Give either devices or group, not both.")
        if "devices" not in attrs and "group" not in attrs:
            raise serializers.ValidationError("Give devices (a list of ids) or group (an id).")
        return attrs


class GatewayShareSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    online = serializers.BooleanField()
    devices = serializers.IntegerField(help_text="Eligible devices behind this gateway.")


class ReasonCountSerializer(serializers.Serializer):
    reason = serializers.CharField()
    count = serializers.IntegerField()


class PlanSerializer(serializers.Serializer):
    """The preview (``devices.operations.Plan``): what the action would do, nothing started."""

    action = serializers.CharField()
    requested = serializers.IntegerField()
    eligible = serializers.SerializerMethodField()
    skipped = serializers.SerializerMethodField()
    skipped_reasons = serializers.SerializerMethodField()
    gateways = GatewayShareSerializer(many=True)
    waiting = serializers.IntegerField(help_text="Eligible devices behind an offline gateway.")
    seats_needed = serializers.IntegerField()
    seats_free = serializers.IntegerField(allow_null=True)
    seats_total = serializers.IntegerField()
    seats_left = serializers.IntegerField(allow_null=True)
    over_capacity = serializers.BooleanField()

    @extend_schema_field(serializers.IntegerField(help_text="Devices that would take it."))
    def get_eligible(self, plan):
        return len(plan.eligible)

    @extend_schema_field(SkippedSerializer(many=True))
    def get_skipped(self, plan):
        return plan.skipped[: operations.SKIPPED_KEPT]

    @extend_schema_field(ReasonCountSerializer(many=True))
    def get_skipped_reasons(self, plan):
        return [{"reason": r, "count": n} for r, n in plan.skipped_reasons]


class ConflictSerializer(serializers.Serializer):
    """409: nothing started. Over capacity says the seats; nothing to do, every reason."""

    detail = serializers.CharField()
    code = serializers.ChoiceField(choices=["capacity_exceeded", "nothing_to_do"])
    seats_requested = serializers.IntegerField(required=False)
    seats_used = serializers.IntegerField(required=False)
    seats_total = serializers.IntegerField(required=False)
    seats_free = serializers.IntegerField(required=False)
    skipped = SkippedSerializer(many=True, required=False)


class CancelledSerializer(serializers.Serializer):
    cancelled = serializers.IntegerField(help_text="Operations cancelled before being sent.")
    operation = BulkOperationSerializer()


class RetrySerializer(serializers.Serializer):
    devices = device_ids_field(required=False, help_text="Only these failed devices.")


# -- starting actions (the widget's DeviceActionView, as JSON) -----------------------


def conflict(exc) -> Response:
    if isinstance(exc, CapacityExceeded):
        body = {
            "detail": str(exc),
            "code": "capacity_exceeded",
            "seats_requested": exc.requested,
            "seats_used": exc.used,
            "seats_total": exc.total,
            "seats_free": exc.free,
        }
    else:
        body = {
            "detail": str(exc),
            "code": "nothing_to_do",
            "skipped": exc.plan.skipped[: operations.SKIPPED_KEPT],
        }
    return Response(body, status=status.HTTP_409_CONFLICT)


class BulkResponseMixin:
    def bulk_detail(self, bulk):
        """A bulk operation with its open counts and first failures (two more queries)."""
        bulk.open = operations.open_counts(bulk=bulk)
        bulk.failed_devices = list(
            Operation.objects.filter(bulk=bulk, state=OperationState.FAILED)
            .select_related("device")
            .only("device__serial_number", "uid", "generation", *FAILURE_FIELDS)
            .order_by("id")[:FAILED_SHOWN]
        )
        return BulkOperationDetailSerializer(bulk, context=self.get_serializer_context()).data

    def started(self, bulk):
        """202: the work goes on after this answer; poll the Location."""
        location = reverse("api:operation-detail", args=[bulk.pk])
        return Response(
            self.bulk_detail(bulk), status=status.HTTP_202_ACCEPTED, headers={"Location": location}
        )


# -- viewsets ------------------------------------------------------------------------


class DevicePagination(Pagination):
    """Keys first, then the page's rows (``KeysFirstPaginator``): cheap on deep pages."""

    def paginate_queryset(self, queryset, request, view=None):
        self.django_paginator_class = partial(KeysFirstPaginator, rows=view.page_rows())
        return super().paginate_queryset(queryset, request, view)


@extend_schema(tags=["devices"])
class DeviceViewSet(
    BulkResponseMixin, OrganizationScopedMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """The organization's devices; ``actions/`` provisions, deprovisions, reprovisions."""

    serializer_class = DeviceSerializer
    pagination_class = DevicePagination

    def page_rows(self):
        return (
            self.scoped(Device)
            .select_related("device_type", "gateway")
            .defer(*DEVICE_DEFERRED)
            .prefetch_related(groups_prefetch())
        )

    def get_queryset(self):
        return self.page_rows()

    def get_serializer_class(self):
        return DeviceDetailSerializer if self.action == "retrieve" else DeviceSerializer

    def filtered(self):
        """The widget's DeviceFilter on checked parameters; unknown ids are 400, not ignored."""
        params = DeviceFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        values = params.validated_data
        lookups = {
            "type": DeviceType.objects.all(),
            "gateway": self.scoped(Gateway),
            "group": self.scoped(DeviceGroup),
        }
        found, errors = {}, {}
        for key, queryset in lookups.items():
            found[key] = []
            if key in values:
                found[key] = list(queryset.filter(pk=values[key]).only("pk", "name"))
                if not found[key]:
                    what = "device type" if key == "type" else f"{key} in this organization"
                    errors[key] = [f"No such {what}."]
        if errors:
            raise serializers.ValidationError(errors)
        facets = Facets(types=found["type"], gateways=found["gateway"], groups=found["group"])
        device_filter = DeviceFilter(values, facets, (Pagination.page_size,))
        return device_filter.apply(self.scoped(Device))

    @extend_schema(
        parameters=[DeviceFilterSerializer], responses={200: DeviceSerializer, **REFUSED}
    )
    def list(self, request):
        """Devices, filtered and sorted like the Devices widget; a constant number of queries."""
        page = self.paginate_queryset(self.filtered())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(responses={200: DeviceDetailSerializer, **REFUSED, **NOT_FOUND})
    def retrieve(self, request, pk=None):
        """One device with its most recent operations."""
        device = self.get_object()
        device.recent_operations = list(device.operations.order_by("-id")[:RECENT_OPERATIONS])
        return Response(self.get_serializer(device).data)

    @extend_schema(
        request=DeviceActionSerializer,
        responses={
            200: OpenApiResponse(PlanSerializer, description="The preview (preview: true)."),
            202: OpenApiResponse(
                BulkOperationDetailSerializer,
                description="Started: the bulk operation to poll (Location header), with "
                "the skipped devices and why.",
            ),
            **FIELD_ERRORS,
            **REFUSED,
            409: OpenApiResponse(
                ConflictSerializer, description="Over capacity, or no device can take it."
            ),
        },
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="actions",
        url_name="actions",
        required_rule="device_actions",
    )
    def actions(self, request):
        """Provision, deprovision or reprovision devices (ids) or a whole group.

        Devices that cannot take the action — unknown ids, another organization's,
        a state the lifecycle forbids, no gateway — are skipped with a reason each;
        the rest proceed.
        """
        body = DeviceActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        # The widget's form resolves the selection and names the target, in this org.
        form = DeviceActionForm(
            {
                "action": values["action"],
                "device": values.get("devices", []),
                "group": values.get("group", ""),
            },
            devices=self.scoped(Device),
            groups=self.scoped(DeviceGroup),
            actions=operations.BULK_ACTIONS,
        )
        if not form.is_valid():
            errors = form_errors(form)
            if "group" in errors:
                errors["group"] = [NO_SUCH_GROUP]
            raise serializers.ValidationError(errors)
        if values["preview"]:
            the_plan = operations.plan(
                self.organization, values["action"], form.queryset, requested_ids=form.requested_ids
            )
            return Response(PlanSerializer(the_plan).data)
        try:
            bulk, _plan = operations.start(
                self.organization,
                request.user,
                values["action"],
                form.queryset,
                form.target,
                requested_ids=form.requested_ids,
            )
        except (CapacityExceeded, operations.NothingToDo) as exc:
            return conflict(exc)
        return self.started(bulk)


@extend_schema(tags=["groups"])
class GroupViewSet(OrganizationScopedMixin, viewsets.ModelViewSet):
    """Device groups: create, rename, delete, and add or remove devices."""

    serializer_class = GroupSerializer
    default_rule = "manage_groups"
    rules = {"list": "view", "retrieve": "view"}

    def get_queryset(self):
        return (
            self.scoped(DeviceGroup).annotate(device_count=Count("devices")).order_by("name", "pk")
        )

    def perform_create(self, serializer):
        with transaction.atomic():
            group = serializer.save()
            group.device_count = 0
            audit.record(
                self.organization, self.request.user, "group.create", [group], name=group.name
            )

    def perform_update(self, serializer):
        old_name = serializer.instance.name
        with transaction.atomic():
            group = serializer.save()
            audit.record(
                self.organization,
                self.request.user,
                "group.rename",
                [group],
                old_name=old_name,
                name=group.name,
            )

    def perform_destroy(self, group):
        pk, name, device_count = group.pk, group.name, group.device_count
        with transaction.atomic():
            group.delete()
            audit.record(
                self.organization,
                self.request.user,
                "group.delete",
                [pk],
                object_type="devicegroup",
                name=name,
                device_count=device_count,
            )

    def change_membership(self, mode):
        group = self.get_object()
        body = DeviceIdsSerializer(data=self.request.data)
        body.is_valid(raise_exception=True)
        ids = list(dict.fromkeys(body.validated_data["devices"]))
        selection = Selection(self.scoped(Device), ids)
        found = set(selection.ids)
        with transaction.atomic():
            change = add_to_group if mode == "add" else remove_from_group
            changed = change(group, selection.ids)
            audit.record(
                self.organization,
                self.request.user,
                f"group.{mode}_devices",
                changed,
                object_type="device",
                group_id=group.pk,
                group=group.name,
                requested=len(selection),
            )
        return Response(
            {
                "changed": changed,
                "unchanged": len(selection) - len(changed),
                "not_found": [pk for pk in ids if pk not in found],
            }
        )

    @extend_schema(
        request=DeviceIdsSerializer,
        responses={200: MembershipChangeSerializer, **FIELD_ERRORS, **REFUSED, **NOT_FOUND},
    )
    @action(detail=True, methods=["post"], url_path="add-devices", url_name="add-devices")
    def add_devices(self, request, pk=None):
        """Put devices into the group; ids of no device here are listed, not errors."""
        return self.change_membership("add")

    @extend_schema(
        request=DeviceIdsSerializer,
        responses={200: MembershipChangeSerializer, **FIELD_ERRORS, **REFUSED, **NOT_FOUND},
    )
    @action(detail=True, methods=["post"], url_path="remove-devices", url_name="remove-devices")
    def remove_devices(self, request, pk=None):
        """Take devices out of the group (they stay in the inventory)."""
        return self.change_membership("remove")


@extend_schema(tags=["gateways"])
class GatewayViewSet(OrganizationScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Gateways, read-only; adding one and its secret belong to the Gateways widget."""

    serializer_class = GatewaySerializer

    def get_queryset(self):
        return (
            self.scoped(Gateway)
            .defer("secret")
            .annotate(device_count=Count("devices"))
            .order_by("name", "pk")
        )

    @extend_schema(parameters=[GatewayFilterSerializer])
    def list(self, request):
        params = GatewayFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        queryset = self.get_queryset()
        if q := " ".join(params.validated_data.get("q", "").split()):
            queryset = queryset.filter(Q(name__icontains=q) | Q(uid__icontains=q))
        if state := params.validated_data.get("status"):
            queryset = queryset.filter(is_online=state == "online")
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


@extend_schema(tags=["operations"])
class BulkOperationViewSet(
    BulkResponseMixin, OrganizationScopedMixin, viewsets.ReadOnlyModelViewSet
):
    """Bulk operations (what an action started): progress, failures, cancel, retry."""

    serializer_class = BulkOperationSerializer

    def get_queryset(self):
        return self.scoped(BulkOperation).select_related("created_by")

    @extend_schema(responses={200: BulkOperationDetailSerializer, **REFUSED, **NOT_FOUND})
    def retrieve(self, request, pk=None):
        """Progress counts, the skipped devices and the first failed ones with reasons."""
        return Response(self.bulk_detail(self.get_object()))

    @extend_schema(responses={200: FailureSerializer(many=True), **REFUSED, **NOT_FOUND})
    @action(detail=True, methods=["get"])
    def failures(self, request, pk=None):
        """Every failed device of the bulk operation with the reason, a page at a time."""
        bulk = self.get_object()
        failed = (
            Operation.objects.filter(bulk=bulk, state=OperationState.FAILED)
            .select_related("device")
            .only("device__serial_number", "uid", "generation", *FAILURE_FIELDS)
            .order_by("id")
        )
        page = self.paginate_queryset(failed)
        return self.get_paginated_response(FailureSerializer(page, many=True).data)

    @extend_schema(request=None, responses={200: CancelledSerializer, **REFUSED, **NOT_FOUND})
    @action(detail=True, methods=["post"], required_rule="device_actions")
    def cancel(self, request, pk=None):
        """Cancel what has not been sent yet; what a gateway already has runs to its end."""
        bulk = self.get_object()
        cancelled = operations.cancel(bulk, request.user)
        bulk.refresh_from_db()
        data = BulkOperationSerializer(bulk, context=self.get_serializer_context()).data
        return Response({"cancelled": cancelled, "operation": data})

    @extend_schema(
        request=RetrySerializer,
        responses={
            202: OpenApiResponse(BulkOperationDetailSerializer, description="The new operation."),
            **FIELD_ERRORS,
            **REFUSED,
            **NOT_FOUND,
            409: ConflictSerializer,
        },
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="retry-failed",
        url_name="retry-failed",
        required_rule="device_actions",
    )
    def retry_failed(self, request, pk=None):
        """A new bulk operation for the devices that failed (all, or the ids given)."""
        bulk = self.get_object()
        body = RetrySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            again, _plan = operations.retry_failed(
                bulk, request.user, body.validated_data.get("devices")
            )
        except (CapacityExceeded, operations.NothingToDo) as exc:
            return conflict(exc)
        return self.started(again)


router = SimpleRouter()
router.register("devices", DeviceViewSet, basename="device")
router.register("groups", GroupViewSet, basename="group")
router.register("gateways", GatewayViewSet, basename="gateway")
router.register("operations", BulkOperationViewSet, basename="operation")

urlpatterns = router.urls
