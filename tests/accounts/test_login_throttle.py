"""Failed logins lock the account and the client address on every way in (login page, admin, API key
exchange) until the cool-off passes; the client address is never taken from a header the client writes.

Lockouts live in django-axes' database tables, so each test's rollback clears them. Every test speaks
from its own documentation-range address (RFC 5737) so that DRF's throttle counts, which live in the
cache and outlast the test, do not meet those of other tests.
"""

from datetime import timedelta

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from freezegun import freeze_time
from rest_framework.request import Request
from rest_framework.test import APIClient
from rest_framework.throttling import BaseThrottle

from accounts.api.views import ApiKeyCreateThrottle
from accounts.errors import login_locked_detail
from accounts.models import ApiKey
from accounts.views import client_ip
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "demo12345"  # the factories' password
KEYS_URL = "/api/v1/auth/keys/"
API_ADDRESSES = ("203.0.113.10", "203.0.113.11", "203.0.113.12", "203.0.113.20")


@pytest.fixture(autouse=True)
def _fresh_api_throttle_counts():
    """DRF counts requests per address in the cache, which outlives the test database."""
    keys = [ApiKeyCreateThrottle.cache_format % {"scope": "api_key_create", "ident": a} for a in API_ADDRESSES]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


@pytest.fixture
def limit() -> int:
    return settings.LOGIN_FAILURE_LIMIT


def page_login(client, email, password, url=None, **extra):
    return client.post(url or reverse("accounts:login"), {"username": email, "password": password}, **extra)


def api_login(client, email, password, **extra):
    return client.post(KEYS_URL, {"email": email, "password": password, "name": "ci"}, format="json", **extra)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def assert_locked_page(response):
    assert response.status_code == 429
    assert "accounts/locked_out.html" in [t.name for t in response.templates]
    assert login_locked_detail(lockout_seconds=settings.LOGIN_LOCKOUT_SECONDS) in response.content.decode()
    assert response["Retry-After"] == str(settings.LOGIN_LOCKOUT_SECONDS)


def test_failed_logins_lock_the_account_from_every_address(buyer, limit):
    attacker = Client(REMOTE_ADDR="198.51.100.1")
    for attempt in range(limit - 1):
        # Case and spaces do not make another account to guess at.
        email = "Buyer@Example.COM " if attempt % 2 else "buyer@example.com"
        response = page_login(attacker, email, "wrong")
        assert response.status_code == 200 and response.context["form"].errors
    assert_locked_page(page_login(attacker, "buyer@example.com", "wrong"))

    # The owner, from elsewhere and with the right password, waits too: the account is locked.
    owner = Client(REMOTE_ADDR="198.51.100.2")
    assert_locked_page(page_login(owner, "buyer@example.com", PASSWORD))
    assert not logged_in(owner)
    # Other accounts are not.
    other = UserFactory(email="other@example.com")
    assert page_login(owner, other.email, PASSWORD).status_code == 302


def test_failed_logins_lock_the_address_for_every_account(buyer, limit):
    attacker = Client(REMOTE_ADDR="198.51.100.3")
    for n in range(limit):  # one guess each at many accounts: none of them reaches the limit
        page_login(attacker, f"guess{n}@example.com", "wrong")
    assert_locked_page(page_login(attacker, "buyer@example.com", PASSWORD))
    assert not logged_in(attacker)
    # The account itself is fine from another address.
    elsewhere = Client(REMOTE_ADDR="198.51.100.4")
    assert page_login(elsewhere, "buyer@example.com", PASSWORD).status_code == 302
    assert logged_in(elsewhere)


def test_the_lock_lifts_by_itself_and_retries_while_locked_do_not_extend_it(buyer, limit):
    client = Client(REMOTE_ADDR="198.51.100.5")
    cool_off = timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS)
    with freeze_time("2031-03-01 12:00:00") as clock:
        for _ in range(limit):
            page_login(client, "buyer@example.com", "wrong")
        clock.tick(cool_off - timedelta(seconds=60))
        assert_locked_page(page_login(client, "buyer@example.com", PASSWORD))
        assert_locked_page(page_login(client, "buyer@example.com", "wrong"))

        clock.tick(timedelta(seconds=61))  # just past the cool-off of the last counted failure
        response = page_login(client, "buyer@example.com", PASSWORD)
        assert response.status_code == 302
        assert client.session["_auth_user_id"] == str(buyer.pk)


def test_the_admin_login_is_throttled(limit):
    staff = UserFactory(email="staff@example.com", is_staff=True, is_superuser=True)
    admin_login = reverse("admin:login")
    attacker = Client(REMOTE_ADDR="198.51.100.6")
    for _ in range(limit - 1):
        assert page_login(attacker, staff.email, "wrong", url=admin_login).status_code == 200
    assert_locked_page(page_login(attacker, staff.email, "wrong", url=admin_login))

    owner = Client(REMOTE_ADDR="198.51.100.7")
    assert_locked_page(page_login(owner, staff.email, PASSWORD, url=admin_login))
    assert not logged_in(owner)


def test_every_way_in_shares_one_count(buyer, limit):
    """Failures on the page, the admin and the API add up: switching doors gains no guesses."""
    doors = [
        lambda client: page_login(client, "buyer@example.com", "wrong"),
        lambda client: page_login(client, "buyer@example.com", "wrong", url=reverse("admin:login")),
        lambda client: api_login(client, "buyer@example.com", "wrong"),
    ]
    for n in range(limit):
        doors[n % len(doors)](APIClient(REMOTE_ADDR=f"198.51.100.{20 + n}"))
    response = api_login(APIClient(REMOTE_ADDR="203.0.113.12"), "buyer@example.com", PASSWORD)
    assert response.status_code == 429 and response.json()["code"] == "login_locked"


def test_a_new_x_forwarded_for_does_not_reset_the_api_key_lockout(buyer, limit):
    client = APIClient(REMOTE_ADDR="203.0.113.10")
    for n in range(limit - 1):
        response = api_login(client, f"guess{n}@example.com", "wrong", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
        assert response.status_code == 401 and response.json()["code"] == "invalid_credentials"
    locked = api_login(client, "guess@example.com", "wrong", HTTP_X_FORWARDED_FOR="10.0.0.99")
    assert locked.status_code == 429
    assert locked.json() == {
        "code": "login_locked",
        "detail": login_locked_detail(lockout_seconds=settings.LOGIN_LOCKOUT_SECONDS),
        "fields": {},
    }
    assert locked["Retry-After"] == str(settings.LOGIN_LOCKOUT_SECONDS)

    # The right password for a fresh account, with yet another header: still the same locked address.
    response = api_login(client, "buyer@example.com", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.200")
    assert response.status_code == 429 and response.json()["code"] == "login_locked"
    assert not ApiKey.objects.exists()


def test_the_api_key_exchange_works_again_after_the_cool_off(buyer, limit):
    client = APIClient(REMOTE_ADDR="203.0.113.11")
    with freeze_time("2031-03-01 12:00:00") as clock:
        for _ in range(limit):
            api_login(client, "buyer@example.com", "wrong")
        assert api_login(client, "buyer@example.com", PASSWORD).status_code == 429
        clock.tick(timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS + 1))
        response = api_login(client, "buyer@example.com", PASSWORD)
    assert response.status_code == 201, response.content
    assert ApiKey.objects.filter(user=buyer).count() == 1


def test_the_api_key_rate_limit_counts_the_connection_not_x_forwarded_for():
    client = APIClient(REMOTE_ADDR="203.0.113.20")
    allowed = int(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["api_key_create"].split("/")[0])
    for n in range(allowed):  # invalid bodies: throttled before parsing, and never a login attempt
        response = client.post(KEYS_URL, {}, format="json", HTTP_X_FORWARDED_FOR=f"10.1.0.{n}")
        assert response.status_code == 400
    response = client.post(KEYS_URL, {}, format="json", HTTP_X_FORWARDED_FOR="10.1.1.1")
    assert response.status_code == 429 and response.json()["code"] == "throttled"


def test_behind_a_trusted_proxy_the_lock_follows_the_address_the_proxy_saw(settings, buyer, limit):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = Client(REMOTE_ADDR="10.0.0.1")  # every request arrives from our proxy, which appends the client
    for n in range(limit):
        # The client writes whatever it likes in front; the proxy's entry is the last one.
        page_login(proxy, f"guess{n}@example.com", "wrong", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 198.51.100.50")
    locked = page_login(proxy, "buyer@example.com", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.77, 198.51.100.50")
    assert_locked_page(locked)
    # Another client behind the same proxy is not locked.
    response = page_login(proxy, "buyer@example.com", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.51")
    assert response.status_code == 302


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, None, "203.0.113.5"),
        (0, "10.9.9.9", "203.0.113.5"),  # no proxy: the header is the client's own words
        (1, None, "203.0.113.5"),
        (1, "10.9.9.9, 198.51.100.9", "198.51.100.9"),
        (2, "10.9.9.9, 198.51.100.9, 192.0.2.1", "198.51.100.9"),
        (2, "198.51.100.9", "198.51.100.9"),
    ],
)
def test_client_address_agrees_with_drf_throttles(rf, settings, proxies, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": proxies}
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    request = rf.post("/", REMOTE_ADDR="203.0.113.5", **extra)
    assert client_ip(request) == expected
    assert BaseThrottle().get_ident(Request(request)) == expected


def test_a_forwarded_entry_that_is_not_an_address_is_never_stored(rf, settings):
    settings.TRUSTED_PROXY_COUNT = 2  # but only one proxy answered: the entry is the client's
    request = rf.post("/", REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="<script>")
    assert client_ip(request) == "203.0.113.5"


def test_the_settings_share_one_proxy_count():
    assert settings.REST_FRAMEWORK["NUM_PROXIES"] == settings.TRUSTED_PROXY_COUNT
