"""The Devices widget (also the /devices/ page) and the device page."""

import time

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views import View

from devices import device_page
from devices.choices import DeviceState
from devices.filters import DeviceFilterSet, Facets, KeysFirstPaginator
from devices.forms import DeviceEditForm
from devices.models import Device, DeviceGroup, DeviceType, Gateway
from devices.operations import BULK_ACTIONS
from portal import audit
from portal.htmx import DialogView, WidgetMixin, on_own_page, render_varying
from portal.tenancy import OrganizationRequiredMixin

# The row menu's device actions, in the order shown.
DEVICE_ACTIONS = [(a.value, a.label) for a in BULK_ACTIONS]

# Rows kept in view after an action although they stopped matching the filter.
KEEP_HEADER = "X-Keep-Devices"
MAX_KEPT = 200


class DeviceListView(WidgetMixin, OrganizationRequiredMixin, View):
    """One view, three renderings: the results (an htmx swap of ``#devices-results``),
    the whole widget (the dashboard's first load) or the standalone page.

    Queries per page do not depend on its size: three facet lists, the count, one page
    of keys, the rows with their type and gateway, one prefetch of their groups (a
    search on SQLite counts in the keys query: one query fewer).
    """

    page_template = "devices/device_list.html"
    widget_template = "devices/_devices_widget.html"
    results_template = "devices/_device_results.html"
    results_id = "devices-results"

    def get(self, request):
        # Before any row is read: a live update stamped later may be newer than the page.
        rendered_at_ms = int(time.time() * 1000)
        facets = Facets(
            types=list(DeviceType.objects.only("pk", "name").order_by("name", "pk")),
            gateways=list(self.scoped(Gateway).only("pk", "name").order_by("name", "pk")),
            groups=list(self.scoped(DeviceGroup).only("pk", "name").order_by("name", "pk")),
        )
        list_url = reverse("devices:widget")
        devices_filter = DeviceFilterSet(
            request.GET,
            self.scoped(Device),
            organization=self.organization,
            rows=facets.rows(),
            page_sizes=settings.DEVICES_PAGE_SIZES,
            base_url=list_url,
        )
        rows = self.scoped(Device).with_relations().with_failure()
        paginator = KeysFirstPaginator(
            devices_filter.qs,
            devices_filter.per_page,
            rows=rows,
            count_in_keys=devices_filter.counts_in_keys,
        )
        page = paginator.get_page(devices_filter.page)
        kept = self.kept_rows(rows, devices_filter)
        context = {
            "kept_devices": kept,
            "rendered_at_ms": rendered_at_ms,
            "device_actions": DEVICE_ACTIONS,
            "filter": devices_filter,
            "facets": facets,
            "page_obj": page,
            "paginator": paginator,
            "devices": page.object_list,
            "states": DeviceState.choices,
            "page_sizes": devices_filter.page_sizes,
            "page_links": self.page_links(devices_filter, page),
            "self_url": devices_filter.url(page=page.number),
            "standalone": on_own_page(request, list_url),
        }
        response = self.render_widget(context)
        patch_vary_headers(response, (KEEP_HEADER,))
        return response

    def kept_rows(self, rows, devices_filter):
        """Rows the user just acted on that no longer match the filter (static/js sends
        their ids in ``X-Keep-Devices`` when a widget refreshes itself after an action):
        they stay in view, dimmed, so the user can watch what they started. Two queries
        (rows, groups) when there are any, none otherwise.
        """
        header = self.request.headers.get(KEEP_HEADER, "")
        ids = [int(part) for part in header.split(",")[:MAX_KEPT] if part.strip().isdigit()]
        if not ids or not devices_filter.is_filtered:
            return []
        matching = devices_filter.filter_queryset(self.scoped(Device)).order_by().values("pk")
        return list(rows.filter(pk__in=ids).exclude(pk__in=matching).order_by("serial_number"))

    @staticmethod
    def page_links(devices_filter, page):
        paginator = page.paginator
        links = []
        for number in paginator.get_elided_page_range(page.number, on_each_side=1, on_ends=1):
            if number == paginator.ELLIPSIS:
                links.append({"ellipsis": True})
            else:
                links.append(
                    {
                        "number": number,
                        "url": devices_filter.url(page=number),
                        "current": number == page.number,
                    }
                )
        nav = {
            "previous": devices_filter.url(page=page.previous_page_number())
            if page.has_previous()
            else "",
            "next": devices_filter.url(page=page.next_page_number()) if page.has_next() else "",
        }
        return {"numbers": links, **nav}


class DeviceEditView(DialogView, View):
    """Edit a device's name and location (device managers' work), audited with the
    values before and after."""

    required_rule = "device_actions"
    title = "Edit name and location"
    body_template = "devices/dialogs/device_edit.html"
    submit_label = "Save"

    def get_device(self, pk):
        return get_object_or_404(self.scoped(Device), pk=pk)

    def get(self, request, pk):
        device = self.get_device(pk)
        return self.render_dialog(
            form=DeviceEditForm(instance=device), device=device, title=self.title_for(device)
        )

    @staticmethod
    def title_for(device):
        return f"Edit {device.serial_number}"

    def post(self, request, pk):
        device = self.get_device(pk)
        before = {"name": device.name, "location": device.location}
        form = DeviceEditForm(request.POST, instance=device)
        if not form.is_valid():
            return self.render_dialog(form=form, device=device, title=self.title_for(device))
        if not form.has_changed():
            return self.done(f"{device.serial_number} is unchanged.")
        form.save(commit=False)
        device.save(update_fields=[*form.changed_data, "updated_at"])
        changed = {
            field: {"from": before[field], "to": form.cleaned_data[field]}
            for field in form.changed_data
        }
        audit.record(self.organization, request.user, "device.edit", [device], changes=changed)
        return self.done(f"Saved the {' and '.join(form.changed_data)} of {device.serial_number}.")


class DeviceDetailView(OrganizationRequiredMixin, View):
    """The device page: identity, every action of the row menu, the installation photo
    and other apps' panels, and the timeline (``devices.device_page``). It re-renders
    itself when the device changes (live.js → ``deviceChanged``), a dialog saves, or an
    operation moves."""

    def get(self, request, pk):
        device = get_object_or_404(self.scoped(Device).with_relations().with_failure(), pk=pk)
        context = {
            "device": device,
            "device_actions": DEVICE_ACTIONS,
            "timeline": device_page.timeline(device),
            "panels": device_page.panels(device),
        }
        return render_varying(request, "devices/device_detail.html", context)
