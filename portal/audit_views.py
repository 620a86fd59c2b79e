"""The Audit log widget (also the /audit/ page) and its CSV export.

Filters: who (the username the entry was written with, so a deleted account's entries
stay findable), action, device (its serial number; the devices app tells the log how
to find a device's entries, ``portal.audit.SUBJECTS``) and a time range in days.

Pages go down the chain's numbers (``?before=<seq>``), read off the
(organization, …, -seq) indexes: a page costs the same at entry 100,000 as at entry
100, and no COUNT runs. Queries per page are constant: the users and actions to choose
from, the chain head, the page's rows, and the closing entries of the bulk operations
started on the page (a device filter adds its lookup).
"""

from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlencode, urlparse

from django.db import connection
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views import View

from portal import audit, audit_chain, exports
from portal.choices import AUDIT_OUTCOME_COLOURS, AuditOutcome
from portal.models import AuditChainHead, AuditEntry
from portal.tenancy import OrganizationRequiredMixin

PAGE_SIZES = (25, 50, 100, 200)
MAX_SEQ = 2**63 - 1
MAX_SERIAL = 64
DETAIL_SHOWN = 6  # detail members shown per row; the export has them all
VALUE_SHOWN = 80  # characters of one detail value shown
SYSTEM = "(system)"  # how the filter names entries without a user (no username can)
EARLIEST = date(2000, 1, 1)
EXPORT_CHUNK = 2000


def _positive(raw, limit=MAX_SEQ):
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return None
    return value if 0 < value <= limit else None


def _day(raw):
    """A day from ``YYYY-MM-DD``; None for anything else, or for a day no entry can have
    (the day after 9999-12-31 would overflow)."""
    try:
        day = date.fromisoformat(str(raw or ""))
    except ValueError:
        return None
    return day if EARLIEST <= day < date.max else None


class AuditFilter:
    """User, action, device, days, page size and page key, checked against what exists.

    Like the Events widget's filter: a value that names nothing the organization has is
    dropped, so a stale or hand-edited URL narrows less but never fails.
    """

    def __init__(self, params, actors, actions, base_url=""):
        self.base_url = base_url
        actor = params.get("user", "")
        self.actor = actor if actor in actors or actor == SYSTEM else ""
        action = params.get("action", "")
        self.action = action if action in actions else ""
        serial = "".join(c for c in params.get("device", "") if c.isprintable() and not c.isspace())
        self.device = serial[:MAX_SERIAL] if audit.SUBJECTS.get("device") else ""
        self.since, self.until = _day(params.get("since")), _day(params.get("until"))
        per_page = _positive(params.get("per_page"), limit=max(PAGE_SIZES))
        self.per_page = per_page if per_page in PAGE_SIZES else PAGE_SIZES[0]
        self.before = _positive(params.get("before"))
        self.device_id = None
        self.device_unknown = False

    def apply(self, entries, organization):
        """The matching entries (``entries`` comes scoped), newest first, from ``before``."""
        if self.actor:
            entries = entries.filter(actor="" if self.actor == SYSTEM else self.actor)
        if self.action:
            entries = entries.filter(action=self.action)
        if self.device:
            subject = audit.SUBJECTS["device"]
            self.device_id = subject.find(organization, self.device)
            if self.device_id is None:
                self.device_unknown = True
                return entries.none()
            entries = entries.filter(audit.about(subject, self.device_id))
        zone = timezone.get_current_timezone()
        if self.since:
            entries = entries.filter(created_at__gte=datetime.combine(self.since, time(), zone))
        if self.until:
            end = datetime.combine(self.until + timedelta(days=1), time(), zone)
            entries = entries.filter(created_at__lt=end)
        if self.before:
            entries = entries.filter(seq__lt=self.before)
        return entries.order_by("-seq")

    @property
    def is_filtered(self):
        return bool(self.actor or self.action or self.device or self.since or self.until)

    def params(self, **changes):
        values = {
            "user": self.actor,
            "action": self.action,
            "device": self.device,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "per_page": "" if self.per_page == PAGE_SIZES[0] else self.per_page,
            "before": self.before or "",
        }
        values.update(changes)
        return {key: value for key, value in values.items() if value not in ("", None)}

    def url(self, base=None, **changes):
        query = urlencode(self.params(**changes))
        base = self.base_url if base is None else base
        return f"{base}?{query}" if query else base

    @property
    def chips(self):
        chips = []
        if self.actor:
            chips.append(("user", "User", "System" if self.actor == SYSTEM else self.actor))
        if self.action:
            chips.append(("action", "Action", self.action))
        if self.device:
            chips.append(("device", "Device", self.device))
        if self.since:
            chips.append(("since", "From", self.since.isoformat()))
        if self.until:
            chips.append(("until", "Until", self.until.isoformat()))
        return [
            {"field": f, "label": label, "value": v, "url": self.url(**{f: "", "before": ""})}
            for f, label, v in chips
        ]


def _shown(value) -> str:
    text = value if isinstance(value, str) else audit_chain.dumps(value)
    return text if len(text) <= VALUE_SHOWN else text[: VALUE_SHOWN - 1] + "…"


def _decorate(entries, closings):
    """What the rows show beyond the columns: colours, detail, the closing entry."""
    device = audit.SUBJECTS.get("device")
    labels = dict(AuditOutcome.choices)
    for entry in entries:
        # Times in UTC, formatted here: the template's date filter costs more than the
        # rest of a 200-row page.
        when = entry.created_at.astimezone(UTC)
        entry.when_iso, entry.when_exact = when.isoformat(), when.strftime("%Y-%m-%d %H:%M:%S.%f")
        entry.when_text = entry.when_exact[:19]
        entry.colour = AUDIT_OUTCOME_COLOURS.get(entry.outcome, "grey")
        entry.outcome_label = labels.get(entry.outcome, entry.outcome)
        entry.detail_items = [(k, _shown(v)) for k, v in sorted(entry.detail.items())]
        entry.detail_more = max(len(entry.detail_items) - DETAIL_SHOWN, 0)
        entry.detail_items = entry.detail_items[:DETAIL_SHOWN]
        entry.closing = closings.get(entry.bulk) if entry.action != audit.FINISHED else None
        if entry.closing:
            entry.closing.colour = AUDIT_OUTCOME_COLOURS.get(entry.closing.outcome, "grey")
            entry.closing.outcome_label = labels.get(entry.closing.outcome, "")
        entry.object_url = ""
        one_device = entry.object_type == "device" and entry.object_count == 1
        if one_device and entry.object_ids and device and device.url:
            entry.object_url = device.url(entry.object_ids[0])
    return entries


def distinct_values(organization, field: str) -> list[str]:
    """The distinct values of ``field`` among the organization's entries, in order.

    A loose index scan (each next value is one probe of the (organization, field, -seq)
    index, as a recursive query): its cost follows the number of distinct values, not of
    entries. ``SELECT DISTINCT`` read all 100,000 index entries of the benchmark log,
    ~10 ms per list on SQLite; this reads a few dozen.
    """
    quote = connection.ops.quote_name
    table = quote(AuditEntry._meta.db_table)
    column = quote(AuditEntry._meta.get_field(field).column)
    org = quote(AuditEntry._meta.get_field("organization").column)
    sql = (
        f"WITH RECURSIVE found(value) AS ("
        f"SELECT MIN({column}) FROM {table} WHERE {org} = %s "
        f"UNION ALL SELECT (SELECT MIN({column}) FROM {table} "
        f"WHERE {org} = %s AND {column} > found.value) FROM found "
        f"WHERE found.value IS NOT NULL) "
        f"SELECT value FROM found WHERE value IS NOT NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [organization.pk, organization.pk])
        return [row[0] for row in cursor.fetchall()]


class AuditChoicesMixin:
    required_rule = "view_audit"

    def choices(self):
        """The usernames and actions found in the log, for the filter's choices."""
        actors = [a for a in distinct_values(self.organization, "actor") if a]
        return actors, distinct_values(self.organization, "action")


class AuditLogView(AuditChoicesMixin, OrganizationRequiredMixin, View):
    """Newest entries first: the results (an htmx swap of ``#audit-results``), the whole
    widget (the dashboard) or the standalone page."""

    def get(self, request):
        actors, actions = self.choices()
        list_url = reverse("audit:log")
        audit_filter = AuditFilter(request.GET, actors, actions, base_url=list_url)
        rows = audit_filter.apply(self.scoped(AuditEntry), self.organization)
        entries = list(rows[: audit_filter.per_page + 1])
        has_older = len(entries) > audit_filter.per_page
        entries = _decorate(entries[: audit_filter.per_page], audit.closings(entries))
        head = AuditChainHead.objects.filter(organization=self.organization).first()
        context = {
            "filter": audit_filter,
            "entries": entries,
            "actors": actors,
            "actions": actions,
            "system": SYSTEM,
            "head": head,
            "page_sizes": PAGE_SIZES,
            "older_url": audit_filter.url(before=entries[-1].seq) if has_older else "",
            "newest_url": audit_filter.url(before="") if audit_filter.before else "",
            "self_url": audit_filter.url(),
            "export_url": audit_filter.url(reverse("audit:export"), before="", per_page=""),
            "device_label": audit.SUBJECTS["device"].label if "device" in audit.SUBJECTS else "",
            "standalone": self.is_standalone(list_url),
        }
        htmx = request.htmx and not request.htmx.history_restore_request
        if not htmx:
            template = "portal/audit_log.html"
        elif request.htmx.target == "audit-results":
            template = "portal/_audit_results.html"
        else:
            template = "portal/_audit_widget.html"
        response = render(request, template, context)
        patch_vary_headers(response, ("HX-Request",))
        return response

    def is_standalone(self, list_url):
        htmx = self.request.htmx
        if not htmx or htmx.history_restore_request:
            return True
        return urlparse(htmx.current_url or "").path == list_url


class AuditExportView(AuditChoicesMixin, OrganizationRequiredMixin, View):
    """The filtered log as CSV, oldest first, with every entry's hashes
    (``audit_chain.EXPORT_COLUMNS``; docs/audit-log.md shows how to check it).

    Streamed from the database in chunks. The export itself is recorded — after the
    entries it contains, which end at the head as it was when the download began.
    """

    def get(self, request):
        actors, actions = self.choices()
        audit_filter = AuditFilter(request.GET, actors, actions)
        audit_filter.before = None  # a page's key: the export has every match
        head = AuditChainHead.objects.filter(organization=self.organization).first()
        last = head.seq if head else 0
        entries = (
            audit_filter.apply(self.scoped(AuditEntry), self.organization)
            .filter(seq__lte=last)
            .order_by("seq")
            .values_list(*audit_chain.STORED, named=True)
        )
        audit.record(
            self.organization,
            request.user,
            "audit.export",
            object_type="auditentry",
            filters=audit_filter.params(before="", per_page=""),
            through=last,
        )
        rows = (audit_chain.export_row(e) for e in entries.iterator(chunk_size=EXPORT_CHUNK))
        name = f"audit-{self.organization.slug}-{timezone.now():%Y%m%d-%H%M%S}.csv"
        return exports.response(name, audit_chain.EXPORT_COLUMNS, rows)
