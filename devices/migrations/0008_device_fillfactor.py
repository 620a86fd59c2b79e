"""Room on each page of the device table, on PostgreSQL, for heap-only updates.

Every event a device sends sets its ``last_seen``, an unindexed column: with free space
on the row's page PostgreSQL rewrites the row in place (a HOT update) instead of adding
an entry to each of the table's sixteen indexes. Rows written from now on get the room.
"""

from django.db import migrations


def set_fillfactor(value):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"ALTER TABLE devices_device SET (fillfactor = {value})")

    return run


class Migration(migrations.Migration):
    dependencies = [("devices", "0007_operation_params")]

    operations = [migrations.RunPython(set_fillfactor(80), set_fillfactor(100))]
