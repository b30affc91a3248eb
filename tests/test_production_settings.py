"""Production refuses development secrets.

`manage.py check --deploy --fail-level WARNING` under marketplace.settings.production, run as a deploy
would run it (a subprocess, values from the environment, a throwaway SQLite database): it fails and names
each problem with the repository's development values, and passes with real-looking ones. The checks
themselves (marketplace/settings/checks.py) are also called directly, one problem at a time.
"""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.management.utils import get_random_secret_key

from marketplace.settings.checks import (
    debug_and_hosts_check,
    environment_encryption_keys_check,
    secret_key_check,
    stripe_keys_check,
    trusted_proxy_count_check,
)

ROOT = Path(__file__).resolve().parent.parent
# What the settings read that the caller's environment must not leak into a run.
SETTINGS_ENVIRONMENT = (
    "DJANGO_SETTINGS_MODULE",
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "DEBUG",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "ENVIRONMENT_ENCRYPTION_KEYS",
    "STRIPE_API_BASE",
    "TRUSTED_PROXY_COUNT",
    "SECURE_SSL_REDIRECT",
)
CHECK_DEPLOY = ("manage.py", "check", "--deploy", "--fail-level", "WARNING")


def real_looking_values() -> dict[str, str]:
    live = "sk_" + "live_"  # split: a whole live-key prefix in the source looks like a leaked key to scanners
    return {
        "SECRET_KEY": get_random_secret_key(),
        "STRIPE_SECRET_KEY": live + secrets.token_hex(24),
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(24),
        "ENVIRONMENT_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "market.example.com",
    }


def development_values() -> dict[str, str]:
    defaults = django_settings.DEVELOPMENT_DEFAULTS
    return {
        "SECRET_KEY": defaults["SECRET_KEY"],
        "STRIPE_SECRET_KEY": defaults["STRIPE_SECRET_KEY"],
        "STRIPE_WEBHOOK_SECRET": defaults["STRIPE_WEBHOOK_SECRET"],
        "ENVIRONMENT_ENCRYPTION_KEYS": defaults["ENVIRONMENT_ENCRYPTION_KEYS"],
        "ALLOWED_HOSTS": "*",
    }


def production(tmp_path, *args: str, **environment: str) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if name not in SETTINGS_ENVIRONMENT}
    env |= {
        "DJANGO_SETTINGS_MODULE": "marketplace.settings.production",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'throwaway.sqlite3'}",
        "STRIPE_API_BASE": "https://api.stripe.com",
        **environment,
    }
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )


def test_check_deploy_refuses_development_values_and_names_each_problem(tmp_path):
    result = production(tmp_path, *CHECK_DEPLOY, **development_values())
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for check_id in (
        "marketplace.E001",
        "marketplace.E003",
        "marketplace.E004",
        "marketplace.E007",
        "marketplace.E010",
    ):
        assert f"({check_id})" in output, f"{check_id} missing from:\n{output}"


@pytest.mark.parametrize("trusted_proxies", ["0", "1"])
def test_check_deploy_passes_with_real_values(tmp_path, trusted_proxies):
    result = production(tmp_path, *CHECK_DEPLOY, **real_looking_values(), TRUSTED_PROXY_COUNT=trusted_proxies)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    "missing",
    ["SECRET_KEY", "ALLOWED_HOSTS", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "ENVIRONMENT_ENCRYPTION_KEYS"],
)
def test_a_secret_missing_from_the_environment_stops_production_at_start(tmp_path, missing):
    values = real_looking_values()
    del values[missing]
    result = production(tmp_path, *CHECK_DEPLOY, **values)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and missing in result.stderr


SHOW_SETTINGS = """
import json
from django.conf import settings
from marketplace.wsgi import application  # what gunicorn loads
database = settings.DATABASES["default"]
print(json.dumps({
    "wsgi": callable(application),
    "debug": settings.DEBUG,
    "engine": database["ENGINE"],
    "pool": database["OPTIONS"].get("pool"),
    "cache": settings.CACHES["default"]["BACKEND"],
    "broker": settings.CELERY_BROKER_URL,
    "proxy_ssl_header": settings.SECURE_PROXY_SSL_HEADER,
    "num_proxies": settings.REST_FRAMEWORK["NUM_PROXIES"],
    "hsts": [settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_INCLUDE_SUBDOMAINS, settings.SECURE_HSTS_PRELOAD],
    "secure": [settings.SECURE_SSL_REDIRECT, settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE],
}))
"""


@pytest.mark.parametrize(
    ("trusted_proxies", "proxy_ssl_header"), [("0", None), ("2", ["HTTP_X_FORWARDED_PROTO", "https"])]
)
def test_production_settings_serve_the_gunicorn_deploy_on_postgres_and_redis(
    tmp_path, trusted_proxies, proxy_ssl_header
):
    """The deploy path: gunicorn loads marketplace.wsgi with DATABASE_URL and REDIS_URL (nothing connects)."""
    result = production(
        tmp_path,
        "-c",
        SHOW_SETTINGS,
        **real_looking_values(),
        DATABASE_URL="postgres://app@db.internal:5432/marketplace",
        REDIS_URL="redis://cache.internal:6379/0",
        TRUSTED_PROXY_COUNT=trusted_proxies,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    assert shown == {
        "wsgi": True,
        "debug": False,
        "engine": "django.db.backends.postgresql",
        "pool": True,
        "cache": "django.core.cache.backends.redis.RedisCache",
        "broker": "redis://cache.internal:6379/0",
        "proxy_ssl_header": proxy_ssl_header,
        "num_proxies": int(trusted_proxies),
        "hsts": [365 * 24 * 3600, True, True],
        "secure": [True, True, True],
    }


# --- The checks one problem at a time (in process).

CHECKS = (
    secret_key_check,
    stripe_keys_check,
    debug_and_hosts_check,
    trusted_proxy_count_check,
    environment_encryption_keys_check,
)


def reported() -> set[str]:
    return {message.id for check in CHECKS for message in check(None)}


@pytest.fixture
def production_settings(settings):
    settings.PRODUCTION = True
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["market.example.com"]
    settings.STRIPE_API_BASE = "https://api.stripe.com"
    settings.TRUSTED_PROXY_COUNT = 0
    for name, value in real_looking_values().items():
        if name != "ALLOWED_HOSTS":
            setattr(settings, name, value)
    return settings


def test_real_values_raise_nothing(production_settings):
    assert reported() == set()


@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("SECRET_KEY", django_settings.DEVELOPMENT_DEFAULTS["SECRET_KEY"], "marketplace.E001"),
        ("SECRET_KEY", "short-but-random-" + "x9" * 10, "marketplace.E002"),
        ("SECRET_KEY", "ab" * 40, "marketplace.E002"),
        ("SECRET_KEY", "django-insecure-" + get_random_secret_key(), "marketplace.E002"),
        ("STRIPE_SECRET_KEY", django_settings.DEVELOPMENT_DEFAULTS["STRIPE_SECRET_KEY"], "marketplace.E003"),
        ("STRIPE_SECRET_KEY", "", "marketplace.E003"),
        ("STRIPE_SECRET_KEY", "sk_test_" + "a1" * 12, "marketplace.E003"),
        ("STRIPE_SECRET_KEY", "rk_test_" + "a1" * 12, "marketplace.E003"),
        ("STRIPE_SECRET_KEY", "not-a-stripe-key", "marketplace.E003"),
        ("STRIPE_WEBHOOK_SECRET", django_settings.DEVELOPMENT_DEFAULTS["STRIPE_WEBHOOK_SECRET"], "marketplace.E004"),
        ("STRIPE_WEBHOOK_SECRET", "", "marketplace.E004"),
        ("STRIPE_PUBLISHABLE_KEY", "pk_test_" + "a1" * 12, "marketplace.E005"),
        ("STRIPE_PUBLISHABLE_KEY", "", "marketplace.E005"),
        ("DEBUG", True, "marketplace.E006"),
        ("ALLOWED_HOSTS", [], "marketplace.E007"),
        ("ALLOWED_HOSTS", ["market.example.com", "*"], "marketplace.E007"),
        ("STRIPE_API_BASE", "http://api.stripe.com", "marketplace.E008"),
        ("TRUSTED_PROXY_COUNT", -1, "marketplace.E009"),
        (
            "ENVIRONMENT_ENCRYPTION_KEYS",
            django_settings.DEVELOPMENT_DEFAULTS["ENVIRONMENT_ENCRYPTION_KEYS"],
            "marketplace.E010",
        ),
        ("ENVIRONMENT_ENCRYPTION_KEYS", "not-a-fernet-key", "marketplace.E011"),
    ],
)
def test_each_unfit_value_is_an_error_of_its_own(production_settings, setting, value, check_id):
    setattr(production_settings, setting, value)
    assert reported() == {check_id}


def test_development_settings_are_not_judged(settings):
    assert settings.PRODUCTION is False
    settings.DEBUG = True
    settings.SECRET_KEY = settings.DEVELOPMENT_DEFAULTS["SECRET_KEY"]
    settings.STRIPE_SECRET_KEY = settings.DEVELOPMENT_DEFAULTS["STRIPE_SECRET_KEY"]
    assert reported() == set()


def test_a_secret_key_starting_with_a_dollar_sign_is_taken_as_is(tmp_path):
    """Generated keys can start with "$", which django-environ would read as another variable's name."""
    values = real_looking_values() | {"SECRET_KEY": "$" + get_random_secret_key()}
    result = production(tmp_path, *CHECK_DEPLOY, **values)
    assert result.returncode == 0, result.stdout + result.stderr
