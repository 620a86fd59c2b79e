"""The Devices widget (also the /devices/ page) and the device page."""

import time

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views import View

from devices.choices import DeviceState
from devices.filters import DeviceFilterSet, Facets, KeysFirstPaginator
from devices.models import Device, DeviceGroup, DeviceType, Gateway
from devices.operations import BULK_ACTIONS
from portal.htmx import WidgetMixin, on_own_page, render_varying
from portal.tenancy import OrganizationRequiredMixin

# The row menu's device actions, in the order shown.
DEVICE_ACTIONS = [(a.value, a.label) for a in BULK_ACTIONS]


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
        rows = self.scoped(Device).with_relations()
        paginator = KeysFirstPaginator(
            devices_filter.qs,
            devices_filter.per_page,
            rows=rows,
            count_in_keys=devices_filter.counts_in_keys,
        )
        page = paginator.get_page(devices_filter.page)
        context = {
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
        return self.render_widget(context)

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


class DeviceDetailView(OrganizationRequiredMixin, View):
    def get(self, request, pk):
        device = get_object_or_404(self.scoped(Device).with_relations(), pk=pk)
        recent = device.operations.select_related("bulk").order_by("-id")[:10]
        context = {"device": device, "device_actions": DEVICE_ACTIONS, "operations": recent}
        return render_varying(request, "devices/device_detail.html", context)
