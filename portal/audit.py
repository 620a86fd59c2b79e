"""Writing the audit log: one call per user action, whatever it touched.

Every entry joins its organization's hash chain (``portal.audit_chain`` says what is
hashed): it is numbered, dated and hashed while the organization's chain head
(``AuditChainHead``) is locked, inside the caller's transaction. So the entry commits
with the action or not at all, and two actions recording at once are chained one
after the other — the second waits for the first to commit — never both after the same
entry. SQLite serialises writers anyway; on PostgreSQL the row lock does it.

Cost: a bulk action on 10,000 devices is one entry (the ids kept are a sample of
``MAX_IDS``, the count is exact), and an entry is three statements — lock the head,
insert, move the head — plus a SHA-256 of its few kilobytes. The head stays locked
until the caller's transaction ends, so record last, after the row locks the action
needs: a transaction that takes more locks after recording makes its organization's
other actions wait for them.

Entries are never rewritten. A bulk operation's start is recorded when it starts; when
it finishes, ``bulks_finished`` records a closing entry with the counts and the final
outcome, and the log shows it beside the start.
"""

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from portal import audit_chain
from portal.choices import AuditOutcome
from portal.models import AuditChainHead, AuditEntry

MAX_IDS = 1000  # a 10,000-device action keeps its count; the ids are a sample
FINISHED = "operation.finished"  # the closing entry of a bulk operation


def record(
    organization,
    user,
    action,
    objects=(),
    *,
    object_type="",
    outcome=AuditOutcome.SUCCESS,
    bulk=None,
    **detail,
) -> AuditEntry:
    """Append one entry: who (``user``), did what (``action``, e.g. ``device.provision``)
    to which ``objects`` (instances or ids), how it ended, and ``detail``.

    ``bulk``: the id of the bulk operation the action started, which its closing entry
    will name too.
    """
    objects = list(objects)
    ids = [getattr(obj, "pk", obj) for obj in objects]
    if not object_type and objects and hasattr(objects[0], "_meta"):
        object_type = objects[0]._meta.model_name
    signed_in = getattr(user, "is_authenticated", False)
    entry = AuditEntry(
        user=user if signed_in else None,
        actor=user.get_username() if signed_in else "",
        action=action,
        object_type=object_type,
        object_ids=audit_chain.plain(ids[:MAX_IDS]),
        object_count=len(ids),
        outcome=audit_chain.plain(outcome),
        bulk=bulk,
        detail=audit_chain.plain(detail),
    )
    with transaction.atomic(savepoint=False):
        _append(_lock_head(organization.pk), [entry])
    return entry


def final_outcome(total: int, done: int, failed: int, cancelled: int) -> AuditOutcome:
    """How a bulk operation ended, from its counters."""
    if done >= total:
        return AuditOutcome.SUCCESS
    if done:
        return AuditOutcome.PARTIAL
    return AuditOutcome.FAILURE if failed else AuditOutcome.CANCELLED


def bulks_finished(bulks: Iterable) -> list[AuditEntry]:
    """Close the audit entries of bulk operations that have just finished.

    ``bulks``: the bulk operations (``devices.models.BulkOperation`` rows or anything
    with ``pk``, ``organization_id``, ``kind``, ``total``, ``done``, ``failed`` and
    ``cancelled``). Called where the operations code closes them, in its transaction.
    Each gets one ``operation.finished`` entry with its counts and final outcome, naming
    the entry that started it (``detail["opening"]``, its number) and sharing its
    ``bulk``. Recording twice for one bulk operation records once.
    """
    by_organization = defaultdict(list)
    for bulk in bulks:
        by_organization[bulk.organization_id].append(bulk)
    written = []
    for organization_id, closing in sorted(by_organization.items()):
        with transaction.atomic(savepoint=False):
            head = _lock_head(organization_id)
            known = AuditEntry.objects.filter(
                organization_id=organization_id, bulk__in=[bulk.pk for bulk in closing]
            ).values_list("bulk", "action", "seq")
            opening, closed = {}, set()
            for bulk_id, action, seq in known:
                if action == FINISHED:
                    closed.add(bulk_id)
                else:
                    opening.setdefault(bulk_id, seq)
            entries = [
                AuditEntry(
                    action=FINISHED,
                    object_type="bulkoperation",
                    object_ids=[bulk.pk],
                    object_count=1,
                    outcome=final_outcome(bulk.total, bulk.done, bulk.failed, bulk.cancelled),
                    bulk=bulk.pk,
                    detail=audit_chain.plain(
                        {
                            "kind": bulk.kind,
                            "total": bulk.total,
                            "done": bulk.done,
                            "failed": bulk.failed,
                            "cancelled": bulk.cancelled,
                            "opening": opening.get(bulk.pk),
                        }
                    ),
                )
                for bulk in sorted(closing, key=lambda b: b.pk)
                if bulk.pk not in closed
            ]
            _append(head, entries)
        written += entries
    return written


def start_chain(sender, instance, created, raw=False, **kwargs) -> None:
    """A new organization gets its chain head with it (``post_save``, wired in
    ``PortalConfig.ready``), so its first entry costs what every other one does."""
    if created and not raw:
        AuditChainHead.objects.create(organization=instance)


def _lock_head(organization_id) -> AuditChainHead:
    """The organization's chain head, locked until the transaction ends (created at the
    organization's first entry; of two first entries at once, one creates, both lock)."""
    heads = AuditChainHead.objects.select_for_update()
    head = heads.filter(organization_id=organization_id).first()
    if head is None:
        AuditChainHead.objects.get_or_create(organization_id=organization_id)
        head = heads.get(organization_id=organization_id)
    return head


def _append(head: AuditChainHead, entries: list[AuditEntry]) -> None:
    """Chain ``entries`` after ``head`` (locked by the caller) and write them."""
    if not entries:
        return
    for entry in entries:
        entry.organization_id = head.organization_id
        entry.seq = head.seq + 1
        entry.created_at = timezone.now()  # under the lock: times grow with numbers
        entry.prev_hash = head.hash
        entry.hash = audit_chain.digest(audit_chain.content(entry))
        head.seq, head.hash = entry.seq, entry.hash
    AuditEntry.objects.bulk_create(entries)
    head.save(update_fields=["seq", "hash"])


# -- what the log is about: objects of the feature apps ---------------------------------


@dataclass(frozen=True)
class Subject:
    """How the log finds the entries about one object of a kind a feature app owns.

    The portal imports no feature app: the app registers its kind here (as it registers
    widgets). ``find`` turns what a user typed into the object's id (or None); ``bulks``
    gives the bulk operations that acted on it (as a query or ids), so a 10,000-device
    action whose sampled ids left it out still counts; ``url`` links to its page.
    """

    object_type: str
    label: str
    find: Callable[[object, str], int | None]
    bulks: Callable[[int], Iterable[int]] | None = None
    url: Callable[[int], str] | None = None


SUBJECTS: dict[str, Subject] = {}


def register_subject(subject: Subject) -> Subject:
    SUBJECTS[subject.object_type] = subject
    return subject


def about(subject: Subject, object_id: int) -> Q:
    """Entries naming the object among their ids, or sharing a bulk operation with it."""
    named = Q(object_type=subject.object_type, object_ids__has_element=object_id)
    if subject.bulks is None:
        return named
    return named | Q(bulk__in=subject.bulks(object_id))


def closings(entries: list[AuditEntry]) -> dict[int, AuditEntry]:
    """The closing entry of each bulk operation started among ``entries``, by bulk id:
    one query for a whole page."""
    started = {e.bulk for e in entries if e.bulk is not None and e.action != FINISHED}
    if not started:
        return {}
    organization_ids = {e.organization_id for e in entries}
    found = AuditEntry.objects.filter(
        organization_id__in=organization_ids, action=FINISHED, bulk__in=started
    )
    return {e.bulk: e for e in found}
