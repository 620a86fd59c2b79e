"""The devices API's serializers: devices, groups, gateways, bulk operations, previews.

Input serializers check what the widgets' forms then validate again (one rule for
names, selections and filters); output serializers never carry a gateway's secret.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from devices import operations
from devices.api.schema import FAILED_SHOWN, TOO_MANY
from devices.forms import MAX_SELECTION, GroupForm
from devices.models import BulkOperation, Device, DeviceGroup, Gateway, Operation
from portal.api import form_errors


def device_ids_field(**kwargs):
    return serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        allow_empty=False,
        max_length=MAX_SELECTION,
        error_messages={"max_length": TOO_MANY},
        **kwargs,
    )


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


class OperationSerializer(serializers.ModelSerializer):
    """One device's part of a bulk operation."""

    class Meta:
        model = Operation
        fields = [
            "id",
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

    class Meta:
        model = Operation
        fields = ["device", "serial_number", "code", "error", "attempts", "finished_at"]
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
