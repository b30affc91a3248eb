from django.db import migrations, models

# "Most reliable first" as the API orders it (DESC NULLS LAST, then id): PostgreSQL only, since
# SQLite cannot declare NULLS LAST in an index (and needs none at its size).
RELIABILITY_INDEX = (
    "CREATE INDEX IF NOT EXISTS offer_reliability_desc ON marketplace_offer (reliability DESC NULLS LAST, id)"
)


def reliability_index_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(RELIABILITY_INDEX)


def reliability_index_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS offer_reliability_desc")


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0006_availabilityalert"),
        ("suppliers", "0010_no_accelerator_mode"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="offer",
            index=models.Index(fields=["accelerator_model", "price_per_hour"], name="offer_model_price"),
        ),
        migrations.RunPython(reliability_index_create, reliability_index_drop),
    ]
