from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Platform catalog and offers"

    def ready(self) -> None:
        # Imported once the app registry is ready: importing the module registers the system checks that
        # keep development secrets out of production.
        from .settings import checks  # noqa: F401, PLC0415
