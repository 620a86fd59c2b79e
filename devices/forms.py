"""Forms of the Devices, Groups and Gateways widgets, and the bulk writes behind them.

Selections arrive as the Devices widget's ``device`` checkboxes (and, from the Groups
widget, as typed serial numbers). They are resolved through the organization-scoped
queryset the view passes in, so a foreign or unknown id simply selects nothing.
Every write is a constant number of queries, whatever the selection size.
"""

import re

from django import forms
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q

from devices.models import Device, DeviceGroup, Gateway

# One bulk_create on SQLite holds 16,383 two-column rows; stay inside one statement.
MAX_SELECTION = 10_000
PREVIEW_SIZE = 12
UID_TAKEN = "A gateway with this UID already exists. Choose another, or leave it blank."

Membership = Device.groups.through


class DeviceIdsField(forms.Field):
    """The ``device`` checkboxes as a list of ids; junk values are dropped, not errors."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value):
        ids = []
        for raw in value or []:
            try:
                pk = int(raw)
            except (TypeError, ValueError):
                continue
            if pk > 0:
                ids.append(pk)
        return list(dict.fromkeys(ids))

    def validate(self, value):
        super().validate(value)
        if len(value) > MAX_SELECTION:
            raise ValidationError(f"Select at most {MAX_SELECTION:,} devices at a time.")


def parse_serials(text):
    return list(dict.fromkeys(s for s in re.split(r"[\s,;]+", text or "") if s))


class Selection:
    """The devices a request names, resolved in the organization (one query)."""

    def __init__(self, devices_queryset, ids=(), serials=()):
        ids, serials = list(ids), list(serials)
        if ids or serials:
            found = devices_queryset.filter(Q(pk__in=ids) | Q(serial_number__in=serials))
            self.rows = list(found.order_by("serial_number").values_list("pk", "serial_number"))
        else:
            self.rows = []
        self.ids = [pk for pk, _ in self.rows]
        found_serials = {serial for _, serial in self.rows}
        self.missing_serials = [s for s in serials if s not in found_serials]

    def __len__(self):
        return len(self.rows)

    @property
    def preview(self):
        return [serial for _, serial in self.rows[:PREVIEW_SIZE]]

    @property
    def more(self):
        return max(0, len(self.rows) - PREVIEW_SIZE)


def add_to_group(group, device_ids):
    """Link devices to ``group``; returns the ids that were not linked yet (2 queries)."""
    existing = set(
        Membership.objects.filter(devicegroup=group, device_id__in=device_ids).values_list(
            "device_id", flat=True
        )
    )
    added = [pk for pk in device_ids if pk not in existing]
    if added:
        # ignore_conflicts: a concurrent request may have linked some meanwhile.
        Membership.objects.bulk_create(
            [Membership(device_id=pk, devicegroup_id=group.pk) for pk in added],
            ignore_conflicts=True,
        )
    return added


def remove_from_group(group, device_ids):
    """Unlink devices from ``group``; returns the ids that were in it (2 queries)."""
    links = Membership.objects.filter(devicegroup=group, device_id__in=device_ids)
    removed = list(links.values_list("device_id", flat=True))
    if removed:
        links.delete()
    return removed


class SelectionFormMixin:
    """Resolves ``device`` ids and ``serials`` into ``self.selection``."""

    require_selection = True

    def clean(self):
        cleaned = super().clean()
        serials = parse_serials(cleaned.get("serials", ""))
        if len(serials) > MAX_SELECTION:
            self.add_error("serials", f"Give at most {MAX_SELECTION:,} serial numbers.")
            return cleaned
        self.selection = Selection(self.devices, cleaned.get("device") or [], serials)
        if self.selection.missing_serials:
            missing = self.selection.missing_serials
            shown = ", ".join(missing[:10]) + (
                f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            )
            self.add_error("serials", f"No device in this organization has serial {shown}.")
        elif self.require_selection and not self.selection:
            raise ValidationError(
                "No devices selected. Tick rows in the Devices widget, or type serial numbers.",
                code="empty",
            )
        return cleaned


class GroupMembershipForm(SelectionFormMixin, forms.Form):
    group = forms.ModelChoiceField(
        queryset=DeviceGroup.objects.none(), empty_label="Choose a group"
    )
    device = DeviceIdsField(required=False)
    serials = forms.CharField(
        label="Serial numbers",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="Optional: one per line, or separated by spaces or commas.",
    )

    def __init__(self, *args, devices, groups, **kwargs):
        super().__init__(*args, **kwargs)
        self.devices = devices
        self.fields["group"].queryset = groups

    def add(self):
        return add_to_group(self.cleaned_data["group"], self.selection.ids)

    def remove(self):
        return remove_from_group(self.cleaned_data["group"], self.selection.ids)


class GroupForm(forms.ModelForm):
    class Meta:
        model = DeviceGroup
        fields = ["name", "description"]

    def clean_name(self):
        return " ".join(self.cleaned_data["name"].split())

    def save_or_error(self):
        """Save, turning a lost race on the unique name into the same field error."""
        try:
            with transaction.atomic():
                return self.save()
        except IntegrityError:
            self.add_error("name", "A group with this name already exists.")
            return None


class GroupCreateForm(SelectionFormMixin, GroupForm):
    """A new group, filled with the selected devices when there are any."""

    require_selection = False
    device = DeviceIdsField(required=False)

    class Meta(GroupForm.Meta):
        pass

    def __init__(self, *args, devices, **kwargs):
        super().__init__(*args, **kwargs)
        self.devices = devices

    def save_with_devices(self):
        """The group and its links in one transaction; None when the name clashed."""
        try:
            with transaction.atomic():
                group = self.save()
                return group, add_to_group(group, self.selection.ids)
        except IntegrityError:
            self.add_error("name", "A group with this name already exists.")
            return None, []


class DeviceActionForm(forms.Form):
    """An action (provision, deprovision, reprovision) on a selection, one device or a group."""

    action = forms.ChoiceField()
    device = DeviceIdsField(required=False)
    group = forms.ModelChoiceField(queryset=DeviceGroup.objects.none(), required=False)

    def __init__(self, *args, devices, groups, actions, **kwargs):
        super().__init__(*args, **kwargs)
        self.devices = devices
        self.fields["action"].choices = [(a.value, a.label) for a in actions]
        self.fields["group"].queryset = groups

    def clean(self):
        cleaned = super().clean()
        group, ids = cleaned.get("group"), cleaned.get("device") or []
        self.requested_ids = [] if group is not None else ids
        if group is not None:
            self.queryset = self.devices.filter(groups=group)
            self.target = f"all devices of group “{group.name}”"
        elif ids:
            self.queryset = self.devices.filter(pk__in=ids)
            self.target = f"{len(ids):,} selected devices" if len(ids) > 1 else "one device"
        elif "group" not in self.errors:
            raise ValidationError(
                "No devices selected. Tick rows in the Devices widget, or choose a group.",
                code="empty",
            )
        return cleaned


class GatewayForm(forms.ModelForm):
    class Meta:
        model = Gateway
        fields = ["name", "uid"]
        help_texts = {
            "uid": "Names the gateway's MQTT topics: letters, digits, '-' and '_'. "
            "Leave blank to generate one."
        }
        error_messages = {"uid": {"unique": UID_TAKEN}}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["uid"].required = False
        self.fields["uid"].widget.attrs.update(
            {"placeholder": "generated when blank", "spellcheck": "false", "autocomplete": "off"}
        )

    def clean_name(self):
        return " ".join(self.cleaned_data["name"].split())

    def clean_uid(self):
        return self.cleaned_data["uid"].strip() or Gateway.unused_uid()

    def save_or_error(self):
        """Save, turning a lost race on the unique UID into the same field error."""
        try:
            with transaction.atomic():
                return self.save()
        except IntegrityError:
            self.add_error("uid", UID_TAKEN)
            return None


def _printable_line(value: str, label: str) -> str:
    """One line of printable text, spaces collapsed: what the gateway protocol carries
    (gateway/schema.py ``text``) and what a list row shows."""
    value = " ".join(value.split())
    if not value.isprintable():
        raise ValidationError(f"{label} may hold printable characters only.")
    return value


class DeviceEditForm(forms.ModelForm):
    """A device's name and location, the two things a person gives it."""

    class Meta:
        model = Device
        fields = ["name", "location"]
        help_texts = {
            "name": "Shown in lists; sent to the device when it is next provisioned.",
            "location": "Where it is installed, e.g. “Floor 2, room 214, above the door”.",
        }

    def clean_name(self):
        return _printable_line(self.cleaned_data["name"], "The name")

    def clean_location(self):
        return _printable_line(self.cleaned_data["location"], "The location")
