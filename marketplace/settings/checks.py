"""System checks that keep development values out of production.

The development defaults of `base.py` (DEVELOPMENT_DEFAULTS) are in the repository, so anyone knows them:
a server running on them can have its sessions and signed values forged (SECRET_KEY) and its Stripe
webhooks forged (STRIPE_WEBHOOK_SECRET: a "paid" top-up that nobody paid). Under the production settings
(PRODUCTION = True) each such problem is an error with its own id, reported by `manage.py check`
(`--deploy` adds Django's own deployment warnings) and by every command that runs the checks (migrate,
runserver). They live beside the settings they judge; marketplace.apps registers them.

Ids: marketplace.E001 SECRET_KEY is the development value; E002 SECRET_KEY is weak; E003/E004/E005 the
Stripe secret key, webhook secret and publishable key; E006 DEBUG is on; E007 ALLOWED_HOSTS is empty or
"*"; E008 STRIPE_API_BASE is not HTTPS; E009 TRUSTED_PROXY_COUNT is negative (any environment); E010
ENVIRONMENT_ENCRYPTION_KEYS is the development value; E011 it is not a list of Fernet keys (any environment);
E012 CURRENCY is not one the platform knows (any environment).
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

from marketplace.money import CURRENCIES

# (setting, check id, the prefixes a live-mode value starts with). Stripe's test-mode keys start with
# sk_test_/rk_test_/pk_test_; webhook signing secrets carry no mode, so only their shape is checked.
STRIPE_SETTINGS = (
    ("STRIPE_SECRET_KEY", "marketplace.E003", ("sk_live_", "rk_live_")),
    ("STRIPE_WEBHOOK_SECRET", "marketplace.E004", ("whsec_",)),
    ("STRIPE_PUBLISHABLE_KEY", "marketplace.E005", ("pk_live_",)),
)
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_UNIQUE_CHARACTERS = 5


def _is_development_value(name: str, value: object) -> bool:
    return value == settings.DEVELOPMENT_DEFAULTS.get(name)


@register(Tags.security)
def secret_key_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if not settings.PRODUCTION:
        return []
    key = settings.SECRET_KEY
    if _is_development_value("SECRET_KEY", key):
        return [
            Error(
                "SECRET_KEY is the development value from the repository: anyone can forge sessions and signed values.",
                hint="Set SECRET_KEY in the environment to a new random value of 50 characters or more.",
                id="marketplace.E001",
            )
        ]
    if (
        len(key) < SECRET_KEY_MIN_LENGTH
        or len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
        or key.startswith("django-insecure-")
    ):
        return [
            Error(
                f"SECRET_KEY is weak: shorter than {SECRET_KEY_MIN_LENGTH} characters, fewer than "
                f"{SECRET_KEY_MIN_UNIQUE_CHARACTERS} distinct characters, or generated as insecure.",
                hint="Generate one with django.core.management.utils.get_random_secret_key().",
                id="marketplace.E002",
            )
        ]
    return []


@register(Tags.security)
def stripe_keys_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if not settings.PRODUCTION:
        return []
    errors: list[CheckMessage] = []
    for name, check_id, live_prefixes in STRIPE_SETTINGS:
        if not hasattr(settings, name):
            continue  # a key the project does not use
        value = getattr(settings, name) or ""
        if not value:
            problem = "is empty"
        elif _is_development_value(name, value):
            problem = "is the development value from the repository"
        elif "_test_" in value:
            problem = "is a Stripe test-mode key"
        elif not value.startswith(live_prefixes):
            problem = f"does not look like a live Stripe value (it starts with none of {', '.join(live_prefixes)})"
        else:
            continue
        errors.append(
            Error(
                f"{name} {problem}.",
                hint=f"Set {name} in the environment to the live value from the Stripe dashboard.",
                id=check_id,
            )
        )
    if not settings.STRIPE_API_BASE.startswith("https://"):
        errors.append(
            Error(
                "STRIPE_API_BASE is not an https:// address: the Stripe secret key would travel in clear.",
                hint="Leave STRIPE_API_BASE unset in production (https://api.stripe.com).",
                id="marketplace.E008",
            )
        )
    return errors


@register(Tags.security)
def debug_and_hosts_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if not settings.PRODUCTION:
        return []
    errors: list[CheckMessage] = []
    if settings.DEBUG:
        errors.append(
            Error(
                "DEBUG is on: error pages show settings, code and queries to anyone.",
                id="marketplace.E006",
            )
        )
    if not settings.ALLOWED_HOSTS or "*" in settings.ALLOWED_HOSTS:
        errors.append(
            Error(
                "ALLOWED_HOSTS is empty or contains '*': name the hosts the site answers for.",
                hint="Set ALLOWED_HOSTS in the environment, e.g. ALLOWED_HOSTS=market.example.com.",
                id="marketplace.E007",
            )
        )
    return errors


@register(Tags.security)
def trusted_proxy_count_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if settings.TRUSTED_PROXY_COUNT < 0:
        return [
            Error(
                "TRUSTED_PROXY_COUNT is negative.",
                hint="0 when clients reach the app directly, else the number of proxies in front of it.",
                id="marketplace.E009",
            )
        ]
    return []


@register(Tags.security)
def environment_encryption_keys_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Instances' secret environment values are encrypted with these keys: a known key reads them."""
    errors: list[CheckMessage] = []
    value = settings.ENVIRONMENT_ENCRYPTION_KEYS
    if settings.PRODUCTION and _is_development_value("ENVIRONMENT_ENCRYPTION_KEYS", value):
        errors.append(
            Error(
                "ENVIRONMENT_ENCRYPTION_KEYS is the development value: anyone can read the secrets buyers give.",
                hint="Set it to a new Fernet key (see marketplace/settings/base.py).",
                id="marketplace.E010",
            )
        )
    try:
        for key in str(value).split(","):
            Fernet(key.strip())
    except (ValueError, TypeError):
        errors.append(
            Error(
                "ENVIRONMENT_ENCRYPTION_KEYS is not a comma-separated list of Fernet keys (32 url-safe base64 bytes).",
                id="marketplace.E011",
            )
        )
    return errors


@register()
def currency_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Balances are not converted: an unknown currency would show and charge amounts in the wrong unit."""
    if settings.PLATFORM_CURRENCY not in CURRENCIES:
        return [
            Error(
                f"CURRENCY {settings.PLATFORM_CURRENCY!r} is not supported.",
                hint=f"Use one of: {', '.join(CURRENCIES)}.",
                id="marketplace.E012",
            )
        ]
    return []
