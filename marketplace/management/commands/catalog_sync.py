from django.core.management.base import BaseCommand

from marketplace.services import catalog_sync


class Command(BaseCommand):
    help = "Create missing catalog reference data: accelerator models, instance types, regions, zones."

    def handle(self, *args, **options):
        created = catalog_sync()
        self.stdout.write(", ".join(f"{count} {name} created" for name, count in created.items()))
