"""The audit log becomes a hash chain per organization (portal/audit_chain.py).

Entries written before keep their content and get, in the order they were written
(by id), their number, the username of their user as ``actor``, the bulk operation
their detail named as ``bulk``, and their links; every organization gets its chain head.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

from portal import audit_chain

BATCH = 1000


def chain_existing_entries(apps, schema_editor):
    AuditEntry = apps.get_model("portal", "AuditEntry")
    AuditChainHead = apps.get_model("portal", "AuditChainHead")
    User = apps.get_model(settings.AUTH_USER_MODEL)
    username_field = getattr(User, "USERNAME_FIELD", "username")
    organization_ids = (
        AuditEntry.objects.order_by("organization_id")
        .values_list("organization_id", flat=True)
        .distinct()
    )
    for organization_id in list(organization_ids):
        names = dict(
            User.objects.filter(
                pk__in=AuditEntry.objects.filter(organization_id=organization_id)
                .exclude(user_id=None)
                .values("user_id")
            ).values_list("pk", username_field)
        )
        seq, prev_hash, pending = 0, audit_chain.GENESIS_HASH, []
        entries = AuditEntry.objects.filter(organization_id=organization_id).order_by("id")
        for entry in entries.iterator(chunk_size=BATCH):
            seq += 1
            detail = audit_chain.plain(entry.detail or {})
            bulk = detail.pop("bulk", None)
            entry.seq = seq
            entry.actor = names.get(entry.user_id, "")
            entry.bulk = bulk if isinstance(bulk, int) and bulk >= 0 else None
            entry.detail = detail
            entry.object_ids = audit_chain.plain(entry.object_ids or [])
            entry.prev_hash = prev_hash
            entry.hash = prev_hash = audit_chain.digest(audit_chain.content(entry))
            pending.append(entry)
            if len(pending) == BATCH:
                AuditEntry.objects.bulk_update(pending, FIELDS)
                pending = []
        AuditEntry.objects.bulk_update(pending, FIELDS)
        AuditChainHead.objects.create(organization_id=organization_id, seq=seq, hash=prev_hash)
    # Organizations with no entry yet start at the beginning.
    Organization = apps.get_model("portal", "Organization")
    AuditChainHead.objects.bulk_create(
        AuditChainHead(organization_id=pk)
        for pk in Organization.objects.exclude(audit_head__isnull=False).values_list("pk", flat=True)
    )


FIELDS = ["seq", "actor", "bulk", "detail", "object_ids", "prev_hash", "hash"]


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="auditentry",
            options={"ordering": ["-seq"], "verbose_name_plural": "audit entries"},
        ),
        migrations.AddField(
            model_name="auditentry",
            name="seq",
            field=models.PositiveBigIntegerField(
                null=True, help_text="Position in the organization's chain: 1, 2, 3, …"
            ),
        ),
        migrations.AddField(
            model_name="auditentry",
            name="actor",
            field=models.CharField(
                blank=True, help_text="Username; empty: the system.", max_length=150
            ),
        ),
        migrations.AddField(
            model_name="auditentry",
            name="bulk",
            field=models.PositiveBigIntegerField(
                blank=True,
                help_text="The bulk operation this action started or closed.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="auditentry",
            name="prev_hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditentry",
            name="hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="outcome",
            field=models.CharField(
                choices=[
                    ("success", "Success"),
                    ("partial", "Partial"),
                    ("failure", "Failure"),
                    ("denied", "Denied"),
                    ("cancelled", "Cancelled"),
                ],
                default="success",
                max_length=10,
            ),
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="created_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.CreateModel(
            name="AuditChainHead",
            fields=[
                (
                    "organization",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="audit_head",
                        serialize=False,
                        to="portal.organization",
                    ),
                ),
                ("seq", models.PositiveBigIntegerField(default=0)),
                ("hash", models.CharField(default=audit_chain.GENESIS_HASH, max_length=64)),
            ],
        ),
        migrations.RunPython(chain_existing_entries, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="auditentry",
            name="seq",
            field=models.PositiveBigIntegerField(
                help_text="Position in the organization's chain: 1, 2, 3, …",
                verbose_name="number",
            ),
        ),
        migrations.AddConstraint(
            model_name="auditentry",
            constraint=models.UniqueConstraint(
                fields=("organization", "seq"), name="audit_chain_position"
            ),
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(
                fields=["organization", "action", "-seq"], name="portal_audi_organiz_action_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(
                fields=["organization", "actor", "-seq"], name="portal_audi_organiz_actor_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(fields=["organization", "bulk"], name="portal_audi_organiz_bulk_idx"),
        ),
    ]
