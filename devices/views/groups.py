"""The Groups widget and its dialogs: create, rename, delete, add and remove devices."""

from django.db import transaction
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views import View

from devices.filters import KeysFirstPaginator
from devices.forms import (
    MAX_SELECTION,
    DeviceIdsField,
    GroupCreateForm,
    GroupForm,
    GroupMembershipForm,
    Selection,
)
from devices.models import Device, DeviceGroup
from portal import audit
from portal.htmx import DialogView, WidgetMixin
from portal.tenancy import OrganizationRequiredMixin

GROUPS_PER_PAGE = 25


def plural(count, word="device"):
    return f"{count:,} {word}{'' if count == 1 else 's'}"


class GroupListView(WidgetMixin, OrganizationRequiredMixin, View):
    """Groups with their device counts: one annotated query for the page's groups."""

    page_template = "devices/group_list.html"
    widget_template = "devices/_groups_widget.html"

    def get(self, request):
        groups = self.scoped(DeviceGroup)
        paginator = KeysFirstPaginator(
            groups.order_by("name", "pk"),
            GROUPS_PER_PAGE,
            rows=groups.with_device_count(),
        )
        page = paginator.get_page(request.GET.get("page"))
        list_url = reverse("devices:groups-widget")
        context = {
            "groups": page.object_list,
            "page_obj": page,
            "paginator": paginator,
            "self_url": f"{list_url}?page={page.number}" if page.number > 1 else list_url,
            "list_url": list_url,
        }
        return self.render_widget(context)


class SelectionDialogMixin:
    """Shows which devices a dialog will touch (the preview before a bulk change)."""

    def selection_from_query(self):
        ids = DeviceIdsField().to_python(self.request.GET.getlist("device"))[:MAX_SELECTION]
        return Selection(self.scoped(Device), ids)


class GroupCreateView(SelectionDialogMixin, DialogView, View):
    required_rule = "manage_groups"
    title = "New group"
    body_template = "devices/dialogs/group_create.html"
    submit_label = "Create group"

    def get_form(self, data=None, initial=None):
        return GroupCreateForm(
            data,
            initial=initial,
            instance=DeviceGroup(organization=self.organization),
            devices=self.scoped(Device),
        )

    def get(self, request):
        selection = self.selection_from_query()
        form = self.get_form(initial={"device": selection.ids})
        return self.render_dialog(form=form, selection=selection)

    def post(self, request):
        form = self.get_form(request.POST)
        if form.is_valid():
            group, added = form.save_with_devices()
            if group is not None:
                audit.record(
                    self.organization,
                    request.user,
                    "group.create",
                    [group],
                    name=group.name,
                    device_ids=added[: audit.MAX_IDS],
                    device_count=len(added),
                )
                with_devices = f" with {plural(len(added))}" if added else ""
                return self.done(f"Created group “{group.name}”{with_devices}.")
        return self.render_dialog(form=form, selection=getattr(form, "selection", None))


class GroupObjectMixin:
    def get_group(self, pk):
        return get_object_or_404(self.scoped(DeviceGroup), pk=pk)


class GroupRenameView(GroupObjectMixin, DialogView, View):
    required_rule = "manage_groups"
    title = "Rename group"
    body_template = "devices/dialogs/group_rename.html"
    submit_label = "Save"

    def get(self, request, pk):
        group = self.get_group(pk)
        return self.render_dialog(form=GroupForm(instance=group), group=group)

    def post(self, request, pk):
        group = self.get_group(pk)
        old_name = group.name
        form = GroupForm(request.POST, instance=group)
        if form.is_valid() and not form.has_changed():
            return self.done(f"“{group.name}” is unchanged.")
        if form.is_valid() and form.save_or_error():
            audit.record(
                self.organization,
                request.user,
                "group.rename",
                [group],
                old_name=old_name,
                name=group.name,
            )
            return self.done(f"Renamed “{old_name}” to “{group.name}”.")
        return self.render_dialog(form=form, group=group)


class GroupDeleteView(GroupObjectMixin, DialogView, View):
    required_rule = "manage_groups"
    title = "Delete group"
    body_template = "devices/dialogs/group_delete.html"
    submit_label = "Delete group"
    danger = True

    def get(self, request, pk):
        group = self.get_group(pk)
        return self.render_dialog(group=group, device_count=group.devices.count())

    def post(self, request, pk):
        group = self.get_group(pk)
        pk, name = group.pk, group.name
        with transaction.atomic():
            device_count = group.devices.count()
            group.delete()
            audit.record(
                self.organization,
                request.user,
                "group.delete",
                [pk],
                object_type="devicegroup",
                name=name,
                device_count=device_count,
            )
        return self.done(
            f"Deleted group “{name}”; its {plural(device_count)} stay in the inventory."
        )


class GroupMembershipView(SelectionDialogMixin, DialogView, View):
    """Add devices to a group, or remove them from it: the selection, then a group."""

    required_rule = "manage_groups"
    mode = "add"

    def get_form(self, data=None, initial=None):
        return GroupMembershipForm(
            data,
            initial=initial,
            devices=self.scoped(Device),
            groups=self.scoped(DeviceGroup).order_by("name", "pk"),
        )

    def get(self, request):
        selection = self.selection_from_query()
        initial = {"device": selection.ids, "group": request.GET.get("group")}
        return self.render_dialog(form=self.get_form(initial=initial), selection=selection)

    def post(self, request):
        form = self.get_form(request.POST)
        if not form.is_valid():
            return self.render_dialog(form=form, selection=getattr(form, "selection", None))
        group, requested = form.cleaned_data["group"], len(form.selection)
        with transaction.atomic():
            changed = form.add() if self.mode == "add" else form.remove()
            audit.record(
                self.organization,
                request.user,
                f"group.{self.mode}_devices",
                changed,
                object_type="device",
                group_id=group.pk,
                group=group.name,
                requested=requested,
            )
        return self.done(self.message(group, requested, len(changed)))

    def message(self, group, requested, changed):
        raise NotImplementedError


class GroupAddDevicesView(GroupMembershipView):
    mode = "add"
    title = "Add devices to a group"
    body_template = "devices/dialogs/group_membership.html"
    submit_label = "Add to group"

    def message(self, group, requested, changed):
        already = requested - changed
        note = f" ({already:,} already in it)" if already else ""
        return f"Added {plural(changed)} to “{group.name}”{note}."


class GroupRemoveDevicesView(GroupMembershipView):
    mode = "remove"
    title = "Remove devices from a group"
    body_template = "devices/dialogs/group_membership.html"
    submit_label = "Remove from group"

    def message(self, group, requested, changed):
        outside = requested - changed
        note = f" ({outside:,} were not in it)" if outside else ""
        return f"Removed {plural(changed)} from “{group.name}”{note}."
