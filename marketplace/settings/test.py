"""Test settings: the same services as configured by the environment, faster hashing."""

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_AUTOREFRESH = True  # serve from the finders; tests do not run collectstatic

# A file, not memory, for SQLite: Celery worker processes started by tests must see the test data.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    VAR_DIR.mkdir(exist_ok=True)  # noqa: F405 - a fresh clone has no var/ yet
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}  # noqa: F405

# No connection pool in tests: threads in concurrency tests must really close their connections,
# or the test database cannot be dropped at the end.
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # noqa: F405
    DATABASES["default"]["OPTIONS"]["pool"] = False  # noqa: F405

import tempfile  # noqa: E402

MEDIA_ROOT = tempfile.mkdtemp(prefix="marketplace-test-media-")

# Tests and benchmarks make thousands of requests a minute with one key; the throttling tests set
# their own limits.
API_RATE_LIMITS = {
    "key": "1000000/minute",
    "account": "1000000/minute",
    "anonymous": "1000000/minute",
    "host": "1000000/minute",
    "refused": "1000000/minute",
}
# Webhook tests post to receivers on 127.0.0.1; the refusal of private addresses is tested with it off.
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True

# Tests read English pages unless they pick a language (the language cookie) themselves.
LANGUAGE_CODE = "en-us"
