from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Platform catalog and offers"

    def ready(self) -> None:
        # Imported once the app registry is ready: importing the module registers the system checks that
        # keep development secrets out of production.
        # Every in-app notification is also a webhook event (accounts is below the webhooks).
        from django.db.models.signals import post_save  # noqa: PLC0415

        from accounts.models import Notification  # noqa: PLC0415

        from .settings import checks  # noqa: F401, PLC0415
        from .webhooks import notification_emitted  # noqa: PLC0415

        post_save.connect(notification_emitted, sender=Notification, dispatch_uid="notification_webhooks")
