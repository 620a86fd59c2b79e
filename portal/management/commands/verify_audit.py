"""Check the organizations' audit chains: ``manage.py verify_audit [--organization SLUG]``.

For each organization, walks its entries in order and recomputes every hash
(``portal.audit_chain.check``): reports the first entry that was changed, deleted, or
inserted out of chain, and otherwise the chain's last number and hash — write those
down somewhere else (a ticket, an e-mail): whoever could rewrite the whole chain after
an edit cannot change what you wrote down. A progress bar on stderr; the exit status is
1 when any chain fails.
"""

from django.core.management.base import BaseCommand, CommandError

from portal import audit_chain
from portal.models import AuditChainHead, AuditEntry, Organization
from portal.progress import ProgressBar

CHUNK = 2000  # entries read per query
PROGRESS_EVERY = 1000


class Command(BaseCommand):
    help = (
        "Check the audit log's hash chains: report the first entry that was changed, "
        "deleted or inserted out of chain (exit status 1 then)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--organization", default="", help="one organization's slug")

    def handle(self, *args, organization="", **options):
        organizations = Organization.objects.order_by("pk")
        if organization:
            organizations = organizations.filter(slug=organization)
            if not organizations.exists():
                raise CommandError(f"No organization {organization!r}.")
        organizations = list(organizations)
        heads = {
            head.organization_id: (head.seq, head.hash)
            for head in AuditChainHead.objects.filter(organization__in=organizations)
        }
        total = AuditEntry.objects.filter(organization__in=organizations).count()
        progress = ProgressBar(self.stderr, "entries checked")
        checked, failed = 0, []
        for org in organizations:
            entries = (
                AuditEntry.objects.filter(organization=org)
                .order_by("seq")
                .values_list(*audit_chain.STORED, named=True)
                .iterator(chunk_size=CHUNK)
            )
            links = (audit_chain.Link(audit_chain.content(e), e.hash) for e in entries)
            count, last, problem = 0, None, None
            for item in audit_chain.check(links, heads.get(org.pk)):
                if isinstance(item, audit_chain.Problem):
                    problem = item
                    break
                count, last = count + 1, item
                checked += 1
                if checked % PROGRESS_EVERY == 0:
                    progress(checked, total)
            if problem:
                failed.append(org)
                self.stdout.write(
                    f"FAILED {org.slug}: {problem.message} (first problem at entry "
                    f"{problem.seq}, {problem.kind})"
                )
            elif last is None:
                self.stdout.write(f"ok {org.slug}: no entries yet")
            else:
                self.stdout.write(
                    f"ok {org.slug}: {count:,} entries, chain intact; "
                    f"last entry {last.seq}, hash {last.hash}"
                )
        progress(total, total)
        if failed:
            raise CommandError(
                f"{len(failed)} of {len(organizations)} audit chains failed the check: "
                + ", ".join(org.slug for org in failed)
            )
