"""Writing the audit log: one call per user action, whatever it touched."""

from portal.choices import AuditOutcome
from portal.models import AuditEntry

MAX_IDS = 1000  # a 10,000-device action keeps its count; the ids are a sample


def record(
    organization,
    user,
    action,
    objects=(),
    *,
    object_type="",
    outcome=AuditOutcome.SUCCESS,
    **detail,
):
    objects = list(objects)
    ids = [getattr(obj, "pk", obj) for obj in objects]
    if not object_type and objects and hasattr(objects[0], "_meta"):
        object_type = objects[0]._meta.model_name
    return AuditEntry.objects.create(
        organization=organization,
        user=user if getattr(user, "is_authenticated", False) else None,
        action=action,
        object_type=object_type,
        object_ids=ids[:MAX_IDS],
        object_count=len(ids),
        outcome=outcome,
        detail=detail,
    )
