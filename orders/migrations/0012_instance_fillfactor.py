"""Instances are rewritten every metering tick (`metered_until`, not indexed): with room left on each
page PostgreSQL updates them in place (HOT) instead of writing a new entry into every index of the
table. 85% keeps that room; existing pages get it as they are rewritten. SQLite: nothing."""

from django.db import migrations


def set_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE orders_instance SET (fillfactor = 85)")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE orders_instance RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("orders", "0011_curated_launch_templates")]

    operations = [migrations.RunPython(set_fillfactor, reset_fillfactor)]
