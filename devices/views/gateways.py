"""The Gateways widget and its dialogs: add a gateway, rotate its secret, delete it.

A gateway's secret signs its whole link, so it leaves the portal exactly once: in the
answer to the request that created or rotated it (never cached, never logged, never
in the list, which does not even load the column).
"""

import secrets
from urllib.parse import urlencode, urlsplit

from django import forms
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.debug import sensitive_variables

from devices import broker
from devices.models import Device, Gateway
from devices.mqtt import broker_url
from devices.views.base import DialogView, render_varying, safe_next, wants_partial
from gateway.config import AgentConfig
from portal import audit
from portal.choices import AuditOutcome
from portal.tenancy import OrganizationRequiredMixin

GATEWAYS_PER_PAGE = 25
MAX_SEARCH_LENGTH = 100
STATUSES = {"online": True, "offline": False}
# Tells the Gateways widget to reload without closing the dialog (``groupsChanged``
# would: the dialog still has to show the secret).
GATEWAYS_CHANGED = "gatewaysChanged"
UID_TAKEN = "A gateway with this UID already exists. Choose another, or leave it blank."
CONFIG_FILENAME = "gateway.toml"
RUN_COMMAND = f"python -m gateway run --config {CONFIG_FILENAME}"
STATE_DIR = "gateway-state"  # relative to the config file (gateway.config.load_config)
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def new_uid() -> str:
    for _ in range(10):
        uid = f"gw-{secrets.token_hex(4)}"
        if not Gateway.objects.filter(uid=uid).exists():
            return uid
    return f"gw-{secrets.token_hex(12)}"  # 10 collisions in 4 billion: just go longer


def toml_string(value: str) -> str:
    """A TOML basic string; json.dumps is not one (surrogate escapes, raw DEL)."""
    out = []
    for char in str(value):
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def agent_broker_url() -> str:
    """settings.MQTT_URL as the agent spells it, without the portal's own login."""
    try:
        return broker_url().without_login()
    except ValueError:
        return AgentConfig.broker_url


@sensitive_variables("secret", "broker_password")
def agent_config_toml(gateway, secret: str, broker_password: str = "") -> str:
    """The agent's config file for ``python -m gateway run --config gateway.toml``."""
    name = "".join(c for c in gateway.name if c.isprintable())
    return "\n".join(
        [
            f"# Fleetgate gateway agent: {name}",
            f"# Run: {RUN_COMMAND}",
            f"gateway_uid = {toml_string(gateway.uid)}",
            f"secret = {toml_string(secret)}",
            f"state_dir = {toml_string(STATE_DIR)}  # relative to this file",
            f"broker_url = {toml_string(agent_broker_url())}",
            f"broker_password = {toml_string(broker_password)}  # the broker login (user: the UID)"
            if broker_password
            else '# broker_password = "..."  # if the broker wants a login (user name: the UID)',
            "",
        ]
    )


class GatewayFilter:
    """Search by name or UID and online/offline; anything else means no filter."""

    def __init__(self, params, base_url):
        self.base_url = base_url
        self.q = " ".join(params.get("q", "").split())[:MAX_SEARCH_LENGTH]
        status = params.get("status", "")
        self.status = status if status in STATUSES else ""
        self.page = params.get("page") or 1

    def apply(self, queryset):
        if self.q:
            queryset = queryset.filter(Q(name__icontains=self.q) | Q(uid__icontains=self.q))
        if self.status:
            queryset = queryset.filter(is_online=STATUSES[self.status])
        return queryset.order_by("name", "pk")

    @property
    def is_filtered(self):
        return bool(self.q or self.status)

    def url(self, **changes):
        values = {"q": self.q, "status": self.status, **changes}
        if values.get("page") in (1, "1"):
            values["page"] = ""
        query = urlencode({k: v for k, v in values.items() if v not in ("", None)})
        return f"{self.base_url}?{query}" if query else self.base_url


def device_count():
    """A correlated count, not a join: COUNT(*) of the list can then drop it."""
    devices = Device.objects.filter(gateway=OuterRef("pk")).order_by().values("gateway")
    return Coalesce(Subquery(devices.annotate(n=Count("pk")).values("n")), 0)


class GatewayListView(OrganizationRequiredMixin, View):
    """Gateways with their device counts: a plain count and one annotated page of rows.

    The secret column is deferred, so a page never loads (or decrypts) a secret.
    """

    def get(self, request):
        list_url = reverse("devices:gateways-widget")
        gateway_filter = GatewayFilter(request.GET, list_url)
        gateways = gateway_filter.apply(
            self.scoped(Gateway).defer("secret").annotate(device_count=device_count())
        )
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
        if not wants_partial(request):
            template = "devices/gateway_list.html"
        elif request.htmx.target == "gateways-results":
            template = "devices/_gateway_results.html"
        else:
            template = "devices/_gateways_widget.html"
        return render_varying(request, template, context)


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
        return self.cleaned_data["uid"].strip() or new_uid()

    def save_or_error(self):
        """Save, turning a lost race on the unique UID into the same field error."""
        try:
            with transaction.atomic():
                return self.save()
        except IntegrityError:
            self.add_error("uid", UID_TAKEN)
            return None


class GatewayDialogView(DialogView):
    required_rule = "manage_gateways"

    def get_gateway(self, pk):
        return get_object_or_404(self.scoped(Gateway).defer("secret"), pk=pk)

    @method_decorator(sensitive_variables("secret", "broker_password"))
    def show_secret(self, gateway, secret, heading, broker_password=""):
        """The one response that carries the secret: the dialog's body becomes it."""
        context = {
            "title": heading,
            "gateway": gateway,
            "secret": secret,
            "broker_password": broker_password,
            "config": agent_config_toml(gateway, secret, broker_password),
            "config_filename": CONFIG_FILENAME,
            "run_command": RUN_COMMAND,
            "broker_is_loopback": urlsplit(agent_broker_url()).hostname in LOOPBACK_HOSTS,
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

    @method_decorator(sensitive_variables("secret", "broker_password"))
    def post(self, request):
        form = self.get_form(request.POST)
        if form.is_valid():
            secret = new_secret()
            broker_password = broker.issue_password(form.instance)
            form.instance.secret = secret
            form.instance.secret_rotated_at = timezone.now()
            gateway = form.save_or_error()
            if gateway is not None:
                audit.record(
                    self.organization,
                    request.user,
                    "gateway.create",
                    [gateway],
                    uid=gateway.uid,
                    name=gateway.name,
                )
                heading = f"Gateway “{gateway.name}” added"
                return self.show_secret(gateway, secret, heading, broker_password)
        return self.render_dialog(form=form)


class GatewayRotateSecretView(GatewayDialogView, View):
    title = "Rotate gateway secret"
    body_template = "devices/dialogs/gateway_rotate.html"
    submit_label = "Rotate secret"
    danger = True

    def get(self, request, pk):
        return self.render_dialog(gateway=self.get_gateway(pk))

    @method_decorator(sensitive_variables("secret", "broker_password"))
    def post(self, request, pk):
        gateway = self.get_gateway(pk)
        secret = new_secret()
        broker_password = broker.issue_password(gateway)  # a leaked config held both
        gateway.secret = secret
        gateway.secret_rotated_at = timezone.now()
        with transaction.atomic():
            gateway.save(update_fields=["secret", "secret_rotated_at", "broker_password_hash"])
            audit.record(
                self.organization,
                request.user,
                "gateway.rotate_secret",
                [gateway],
                uid=gateway.uid,
                name=gateway.name,
            )
        heading = f"New secret for “{gateway.name}”"
        return self.show_secret(gateway, secret, heading, broker_password)


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
