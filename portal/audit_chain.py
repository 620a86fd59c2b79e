"""The audit log's hash chain: exactly what is hashed, and how a chain is checked.

Plain Python, no models: ``portal.audit`` (writing), the migration that chained the
entries written before the chain existed, ``verify_audit`` and the CSV export share this
one definition. docs/audit-log.md says the same for readers outside the project, with
a checker of an export in a few lines of Python (tests run that very snippet).

**Content.** An entry's content is a JSON object with exactly these members:
``v`` (1), ``organization`` (its id), ``seq`` (1, 2, 3, … within the organization),
``created_at`` (UTC, ``2026-11-22T14:12:05.123456Z``: always six fraction digits),
``actor`` (username, ``""`` for the system), ``action``, ``object_type``,
``object_ids`` (a list), ``object_count``, ``outcome``, ``bulk`` (a bulk operation's id
or ``null``), ``detail`` (an object) and ``prev_hash``.

**Canonical bytes.** ``json.dumps(content, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` encoded as UTF-8: members sorted by name at every depth, no
whitespace, non-ASCII characters as themselves. Values are limited to what reads back
the same from every database (``plain``): strings, integers, booleans, null, lists and
objects — no floats, which PostgreSQL's jsonb may write back differently.

**Hash.** SHA-256 of the canonical bytes, 64 lowercase hex digits. ``prev_hash`` of an
organization's first entry is 64 zeros (``GENESIS_HASH``); of every later one, the
``hash`` of the entry before it.
"""

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

VERSION = 1
GENESIS_HASH = "0" * 64
FIELDS = (
    "organization",
    "seq",
    "created_at",
    "actor",
    "action",
    "object_type",
    "object_ids",
    "object_count",
    "outcome",
    "bulk",
    "detail",
    "prev_hash",
)
# The export's columns: the content, then the entry's own hash.
EXPORT_COLUMNS = (*FIELDS, "hash")
# What to read of a stored entry for ``content`` and its hash, as attribute names:
# ``AuditEntry.objects.values_list(*STORED, named=True)`` rows are ten times cheaper
# than model instances when a check or an export reads 100,000 of them.
STORED = tuple("organization_id" if f == "organization" else f for f in EXPORT_COLUMNS)


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def plain(value):
    """``value`` as JSON that every database gives back unchanged.

    Floats become integers when whole and strings otherwise; tuples and sets lists;
    keys strings; anything else (a date, a UUID, a Decimal) its ``str``. NUL characters
    are dropped: PostgreSQL's jsonb refuses them.
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, float):
        return int(value) if value.is_integer() else repr(value)
    if isinstance(value, dict):
        return {plain(str(k)): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((plain(v) for v in value), key=repr)
    return plain(str(value))


def content(entry) -> dict:
    """The hashed content of an entry (a model instance, or anything with its fields)."""
    return {
        "v": VERSION,
        "organization": entry.organization_id,
        "seq": entry.seq,
        "created_at": timestamp(entry.created_at),
        "actor": entry.actor,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_ids": entry.object_ids,
        "object_count": entry.object_count,
        "outcome": entry.outcome,
        "bulk": entry.bulk,
        "detail": entry.detail,
        "prev_hash": entry.prev_hash,
    }


def dumps(value) -> str:
    """Canonical JSON text (also the export's cells for ``object_ids`` and ``detail``)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def digest(entry_content: dict) -> str:
    return hashlib.sha256(dumps(entry_content).encode("utf-8")).hexdigest()


def export_row(entry) -> list:
    """An entry as a row of the export (``EXPORT_COLUMNS``)."""
    body = content(entry)
    body["object_ids"] = dumps(body["object_ids"])
    body["detail"] = dumps(body["detail"])
    body["bulk"] = "" if body["bulk"] is None else body["bulk"]
    return [body[name] for name in FIELDS] + [entry.hash]


# -- checking ------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with a chain: at which number, of what kind, in words."""

    seq: int
    kind: str  # "changed", "deleted" or "inserted"
    message: str


@dataclass(frozen=True)
class Link:
    """What the checker needs of an entry: its content as stored, and its stored hash."""

    content: dict
    hash: str

    @property
    def seq(self) -> int:
        return self.content["seq"]


def check(links: Iterable[Link], head: tuple[int, str] | None = None) -> Iterator[Link | Problem]:
    """Walk one organization's chain in ``seq`` order: yields each link that checked out
    (for a progress bar), and stops at the first ``Problem``, which it yields.

    ``head``: the (seq, hash) the portal keeps as the chain's last link; without it,
    entries deleted from the very end cannot be told from a shorter chain.
    """
    expected, prev_hash = 1, GENESIS_HASH
    for link in links:
        seq = link.seq
        if head is not None and seq > head[0]:
            yield Problem(
                seq,
                "inserted",
                f"Entry {seq} lies beyond the chain's last link ({head[0]}): it was "
                "inserted without being chained.",
            )
            return
        if seq < expected:
            yield Problem(seq, "inserted", f"Entry {seq} is there twice: one was inserted.")
            return
        if seq != expected:
            missing = f"{expected}" if seq == expected + 1 else f"{expected} to {seq - 1}"
            yield Problem(expected, "deleted", f"Entry {missing} is missing: deleted.")
            return
        if digest(link.content) != link.hash:
            yield Problem(seq, "changed", f"Entry {seq} was changed after it was written.")
            return
        if link.content["prev_hash"] != prev_hash:
            before = seq - 1
            yield Problem(
                max(before, 1),
                "changed" if before else "inserted",
                f"Entry {seq} does not follow entry {before}: entry {before} was changed "
                f"(and its hash written anew), or entry {seq} was inserted in its place."
                if before
                else f"Entry {seq} is not the start of a chain: it was inserted.",
            )
            return
        prev_hash, expected = link.hash, seq + 1
        yield link
    last = expected - 1
    if head is not None:
        if head[0] > last:
            missing = f"{last + 1}" if head[0] == last + 1 else f"{last + 1} to {head[0]}"
            yield Problem(last + 1, "deleted", f"Entry {missing} is missing from the end: deleted.")
        elif head[1] != prev_hash:
            yield Problem(
                last,
                "changed",
                f"Entry {last}, the last one, is not the one the chain ended with: changed.",
            )
