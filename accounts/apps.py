from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # Imported once the app registry is ready: it registers the OpenAPI description of Bearer keys.
        from . import schema  # noqa: F401, PLC0415
