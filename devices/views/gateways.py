"""The Gateways widget and its dialogs: add a gateway, rotate its secret, delete it.

A gateway's secret signs its whole link, so it leaves the portal exactly once: in the
answer to the request that created or rotated it (never cached, never logged, never
in the list, which does not even load the column).
"""

from django.core.paginator import Paginator
from django.db import transaction
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.debug import sensitive_variables

from devices import agent_config
from devices.filters import GatewayFilterSet
from devices.forms import GatewayForm
from devices.models import Gateway
from portal import audit
from portal.choices import AuditOutcome
from portal.htmx import DialogView, WidgetMixin, render_varying, safe_next, wants_partial
from portal.tenancy import OrganizationRequiredMixin

GATEWAYS_PER_PAGE = 25
# Tells the Gateways widget to reload without closing the dialog (``groupsChanged``
# would: the dialog still has to show the secret).
GATEWAYS_CHANGED = "gatewaysChanged"


class GatewayListView(WidgetMixin, OrganizationRequiredMixin, View):
    """Gateways with their device counts: a plain count and one annotated page of rows.

    The secret column is deferred, so a page never loads (or decrypts) a secret.
    """

    page_template = "devices/gateway_list.html"
    widget_template = "devices/_gateways_widget.html"
    results_template = "devices/_gateway_results.html"
    results_id = "gateways-results"

    def get(self, request):
        list_url = reverse("devices:gateways-widget")
        gateway_filter = GatewayFilterSet(
            request.GET,
            self.scoped(Gateway).for_list(),
            base_url=list_url,
        )
        gateways = gateway_filter.qs.order_by("name", "pk")
        paginator = Paginator(gateways, GATEWAYS_PER_PAGE)
        page = paginator.get_page(gateway_filter.page)
        context = {
            "filter": gateway_filter,
            "gateways": page.object_list,
            "page_obj": page,
            "paginator": paginator,
            "self_url": gateway_filter.url(page=page.number),
            "previous_url": gateway_filter.url(page=page.number - 1) if page.has_previous() else "",
            "next_url": gateway_filter.url(page=page.number + 1) if page.has_next() else "",
            "statuses": [("online", "Online"), ("offline", "Offline")],
        }
        return self.render_widget(context)


class GatewayDialogView(DialogView):
    required_rule = "manage_gateways"

    def audit(self, action, gateway):
        audit.record(
            self.organization,
            self.request.user,
            action,
            [gateway],
            uid=gateway.uid,
            name=gateway.name,
        )

    def get_gateway(self, pk):
        return get_object_or_404(self.scoped(Gateway).defer("secret"), pk=pk)

    @method_decorator(sensitive_variables("secret"))
    def show_secret(self, gateway, secret, heading):
        """The one response that carries the secret: the dialog's body becomes it."""
        context = {
            "title": heading,
            "gateway": gateway,
            "secret": secret,
            "config": agent_config.agent_config_toml(gateway, secret),
            "config_filename": agent_config.CONFIG_FILENAME,
            "run_command": agent_config.RUN_COMMAND,
            "broker_is_loopback": agent_config.broker_is_loopback(),
            "next": safe_next(self.request),
        }
        if wants_partial(self.request):
            response = render_varying(self.request, "devices/dialogs/gateway_secret.html", context)
            response["HX-Trigger"] = GATEWAYS_CHANGED
        else:
            response = render_varying(self.request, "devices/gateway_secret_page.html", context)
        add_never_cache_headers(response)  # no-store: the secret stays out of caches
        return response


class GatewayCreateView(GatewayDialogView, View):
    title = "New gateway"
    body_template = "devices/dialogs/gateway_create.html"
    submit_label = "Add gateway"

    def get_form(self, data=None):
        return GatewayForm(data, instance=Gateway(organization=self.organization))

    def get(self, request):
        return self.render_dialog(form=self.get_form())

    @method_decorator(sensitive_variables("secret"))
    def post(self, request):
        form = self.get_form(request.POST)
        if form.is_valid():
            secret = form.instance.new_secret()
            gateway = form.save_or_error()
            if gateway is not None:
                self.audit("gateway.create", gateway)
                return self.show_secret(gateway, secret, f"Gateway “{gateway.name}” added")
        return self.render_dialog(form=form)


class GatewayRotateSecretView(GatewayDialogView, View):
    title = "Rotate gateway secret"
    body_template = "devices/dialogs/gateway_rotate.html"
    submit_label = "Rotate secret"
    danger = True

    def get(self, request, pk):
        return self.render_dialog(gateway=self.get_gateway(pk))

    @method_decorator(sensitive_variables("secret"))
    def post(self, request, pk):
        gateway = self.get_gateway(pk)
        with transaction.atomic():
            secret = gateway.rotate_secret()
            self.audit("gateway.rotate_secret", gateway)
        return self.show_secret(gateway, secret, f"New secret for “{gateway.name}”")


class GatewayDeleteView(GatewayDialogView, View):
    """Only a gateway without devices: deleting one would silently orphan its devices
    (and their operations); moving them to another gateway is a decision to make first."""

    title = "Delete gateway"
    body_template = "devices/dialogs/gateway_delete.html"
    submit_label = "Delete gateway"
    danger = True

    def get(self, request, pk):
        gateway = self.get_gateway(pk)
        device_count = gateway.devices.count()
        return self.render_dialog(
            gateway=gateway, device_count=device_count, blocked=device_count > 0
        )

    def post(self, request, pk):
        gateway = self.get_gateway(pk)
        pk, uid, name = gateway.pk, gateway.uid, gateway.name
        with transaction.atomic():
            device_count = gateway.devices.count()
            if not device_count:
                gateway.delete()
            audit.record(
                self.organization,
                request.user,
                "gateway.delete",
                [pk],
                object_type="gateway",
                outcome=AuditOutcome.FAILURE if device_count else AuditOutcome.SUCCESS,
                uid=uid,
                name=name,
                device_count=device_count,
            )
        if device_count:
            return self.render_dialog(
                gateway=gateway, device_count=device_count, blocked=True, refused=True
            )
        return self.done(f"Deleted gateway “{name}” ({uid}).")
