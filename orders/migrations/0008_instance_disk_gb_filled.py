from django.db import migrations, models


def disk_from_instance_type(apps, schema_editor):
    Instance = apps.get_model("orders", "Instance")
    InstanceType = apps.get_model("marketplace", "InstanceType")
    for type_id, disk_gb in InstanceType.objects.values_list("pk", "disk_gb"):
        Instance.objects.filter(instance_type_id=type_id, disk_gb__isnull=True).update(disk_gb=disk_gb)


class Migration(migrations.Migration):
    """Each instance's disk, filled from its type for rows made before disks were chosen (a migration
    of its own: PostgreSQL refuses to alter a table with pending updates in one transaction)."""

    dependencies = [("orders", "0007_ports_templates_environment_logs")]

    operations = [
        migrations.RunPython(disk_from_instance_type, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="instance",
            name="disk_gb",
            field=models.PositiveIntegerField(help_text="Its disk: the type's default or more, chosen at order."),
        ),
    ]
