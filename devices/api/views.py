"""The devices part of the REST API: devices, groups, gateways, bulk operations, actions.

Thin like the widget views: rows come through ``portal.api.OrganizationScopedMixin``
(``self.scoped``), device actions through ``devices.operations`` (which asks
``devices.lifecycle``), selections through ``devices.forms`` — the same code paths as
the widgets, so the API cannot drift from them. Lists cost a constant number of queries.
"""

from functools import partial

from django.db import transaction
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from devices import operations
from devices.api.schema import FAILED_SHOWN, NO_SUCH_GROUP, RECENT_OPERATIONS
from devices.api.serializers import (
    BulkOperationDetailSerializer,
    BulkOperationSerializer,
    CancelledSerializer,
    ConflictSerializer,
    DeviceActionSerializer,
    DeviceDetailSerializer,
    DeviceIdsSerializer,
    DeviceSerializer,
    FailureSerializer,
    GatewaySerializer,
    GroupSerializer,
    MembershipChangeSerializer,
    PlanSerializer,
    RetrySerializer,
)
from devices.filters import DeviceFilterSet, GatewayFilterSet, KeysFirstPaginator
from devices.forms import DeviceActionForm, Selection, add_to_group, remove_from_group
from devices.models import BulkOperation, Device, DeviceGroup, Gateway, Operation
from portal import audit
from portal.api import (
    FIELD_ERRORS,
    NOT_FOUND,
    REFUSED,
    OrganizationScopedMixin,
    Pagination,
    form_errors,
)


class BulkResponseMixin:
    def bulk_detail(self, bulk):
        """A bulk operation with its open counts and first failures (two more queries)."""
        bulk.open = operations.open_counts(bulk=bulk)
        bulk.failed_devices = list(Operation.objects.failed_of(bulk)[:FAILED_SHOWN])
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
    filterset_class = DeviceFilterSet

    def page_rows(self):
        return self.scoped(Device).with_relations()

    def get_queryset(self):
        return self.page_rows()

    def get_serializer_class(self):
        return DeviceDetailSerializer if self.action == "retrieve" else DeviceSerializer

    @extend_schema(responses={200: DeviceSerializer, **REFUSED})
    def list(self, request):
        """Devices, filtered and sorted like the Devices widget; a constant number of queries."""
        page = self.paginate_queryset(self.filter_queryset(self.scoped(Device)))
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
        bulk, _plan = operations.start(
            self.organization,
            request.user,
            values["action"],
            form.queryset,
            form.target,
            requested_ids=form.requested_ids,
        )
        return self.started(bulk)


MEMBERSHIP_SCHEMA = extend_schema(
    request=DeviceIdsSerializer,
    responses={200: MembershipChangeSerializer, **FIELD_ERRORS, **REFUSED, **NOT_FOUND},
)


@extend_schema(tags=["groups"])
class GroupViewSet(OrganizationScopedMixin, viewsets.ModelViewSet):
    """Device groups: create, rename, delete, and add or remove devices."""

    serializer_class = GroupSerializer
    default_rule = "manage_groups"
    rules = {"list": "view", "retrieve": "view"}

    def get_queryset(self):
        return self.scoped(DeviceGroup).with_device_count().order_by("name", "pk")

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

    @MEMBERSHIP_SCHEMA
    @action(detail=True, methods=["post"], url_path="add-devices", url_name="add-devices")
    def add_devices(self, request, pk=None):
        """Put devices into the group; ids of no device here are listed, not errors."""
        return self.change_membership("add")

    @MEMBERSHIP_SCHEMA
    @action(detail=True, methods=["post"], url_path="remove-devices", url_name="remove-devices")
    def remove_devices(self, request, pk=None):
        """Take devices out of the group (they stay in the inventory)."""
        return self.change_membership("remove")


@extend_schema(tags=["gateways"])
class GatewayViewSet(OrganizationScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Gateways, read-only; adding one and its secret belong to the Gateways widget."""

    serializer_class = GatewaySerializer
    filterset_class = GatewayFilterSet

    def get_queryset(self):
        return self.scoped(Gateway).for_list().order_by("name", "pk")


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
        page = self.paginate_queryset(Operation.objects.failed_of(bulk))
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
        again, _plan = operations.retry_failed(
            bulk, request.user, body.validated_data.get("devices")
        )
        return self.started(again)
