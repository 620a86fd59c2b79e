"""Existing API tokens (DRF's plaintext ``authtoken_token``) become digests.

Each key is stored as its SHA-256 digest in ``portal.ApiToken`` — so the installer
app's tokens keep working — with an expiry ``API_TOKEN_DAYS`` from now; then the
plaintext table is dropped (``rest_framework.authtoken`` is no longer installed).
"""

import hashlib
from datetime import timedelta

from django.conf import settings
from django.db import migrations
from django.utils import timezone

OLD_TABLE = "authtoken_token"


def move_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if OLD_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("portal", "ApiToken")
    quoted = connection.ops.quote_name(OLD_TABLE)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {connection.ops.quote_name('key')}, user_id FROM {quoted}")
        rows = cursor.fetchall()
    expires = timezone.now() + timedelta(days=getattr(settings, "API_TOKEN_DAYS", 90))
    ApiToken.objects.bulk_create(
        ApiToken(
            user_id=user_id,
            name="token from before expiring tokens",
            digest=hashlib.sha256(key.encode()).hexdigest(),
            prefix=key[:7],
            expires_at=expires,
        )
        for key, user_id in rows
    )
    schema_editor.execute(f"DROP TABLE {quoted}")


class Migration(migrations.Migration):
    dependencies = [("portal", "0003_invitations_hashed_api_tokens")]

    operations = [migrations.RunPython(move_tokens, migrations.RunPython.noop)]
