"""Production: everything sensitive must come from the environment.

A secret missing from the environment stops every process at start (gunicorn, Celery, manage.py). A
secret that is there but unfit (the development value from the repository, a Stripe test key, a weak
SECRET_KEY) is an error of the system checks (marketplace/settings/checks.py): run
`manage.py check --deploy --fail-level WARNING` before serving; `migrate` refuses too.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import TRUSTED_PROXY_COUNT, env


def secret(name: str) -> str:
    """A secret from the environment, taken as is. django-environ reads a value that starts with "$"
    as the name of another variable, and generated keys can start with "$"."""
    try:
        return os.environ[name]
    except KeyError:
        raise ImproperlyConfigured(f"Set the {name} environment variable.") from None


PRODUCTION = True
DEBUG = False
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False  # webhooks never reach the platform's own network
SECRET_KEY = secret("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
# Links in emails (invitations): the first allowed host over HTTPS unless set.
SITE_URL = env("SITE_URL", default=f"https://{ALLOWED_HOSTS[0]}" if ALLOWED_HOSTS else "").rstrip("/")
STRIPE_SECRET_KEY = secret("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = secret("STRIPE_WEBHOOK_SECRET")
ENVIRONMENT_ENCRYPTION_KEYS = secret("ENVIRONMENT_ENCRYPTION_KEYS")

# HTTPS only. Behind a TLS-terminating proxy, set TRUSTED_PROXY_COUNT so Django believes the proxy's
# X-Forwarded-Proto (otherwise the redirect below loops); with no proxy nobody's header is believed.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
if TRUSTED_PROXY_COUNT > 0:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = 365 * 24 * 60 * 60  # one year, the minimum the browsers' preload lists accept
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
