"""API keys carry scopes and may expire: a request outside a key's scopes is 403
`insufficient_scope` naming what it needs, an expired or revoked key 401 with its own code, and a
staff member's key without the staff scope acts as an ordinary account. Every API view names the
area its scope comes from, so none is open to every key by accident."""

from datetime import timedelta

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from freezegun import freeze_time
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.scopes import DEFAULT_SCOPES, Scope, required_scopes
from accounts.services import api_key_issue
from marketplace.errors import InvalidInput
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

# Views any key (or anyone) may call: the catalog, offers and market depth are public; the key exchange and the
# agent endpoints do not authenticate with API keys; the schema and its docs.
OPEN_TO_ANY_KEY = {
    "AcceleratorModelViewSet",
    "InstanceTypeViewSet",
    "RegionViewSet",
    "OfferViewSet",
    "MarketDepthView",
    "ApiKeyCreateView",
    "APIRootView",
    "SpectacularAPIView",
    "SpectacularSwaggerView",
}


def client_with(user, *scopes, **kwargs) -> tuple[APIClient, ApiKey]:
    issued = api_key_issue(user=user, name="scoped", scopes=scopes, **kwargs)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.key}")
    return client, issued.api_key


def api_views():
    def walk(patterns):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns)
            elif isinstance(pattern, URLPattern):
                view = getattr(pattern.callback, "cls", None)  # DRF views only
                if view is not None:
                    yield view

    return {view for view in walk(get_resolver().url_patterns) if view.__module__.split(".")[0] != "django"}


def test_every_api_view_names_the_scope_area_it_belongs_to():
    views = api_views()
    assert {"InstanceViewSet", "HostViewSet", "BalanceView", "MeView"} <= {view.__name__ for view in views}
    unscoped = {
        view.__name__
        for view in views
        if getattr(view, "api_key_scope", None) is None
        and not view.__module__.startswith("suppliers.api.agent")
        and view.__name__ not in OPEN_TO_ANY_KEY
    }
    assert unscoped == set()


def test_reading_needs_read_or_the_areas_scope_and_writing_the_areas_own(buyer):
    reader, _ = client_with(buyer, "read")
    assert reader.get("/api/v1/billing/balance/").status_code == 200
    assert reader.get("/api/v1/instances/").status_code == 200
    refused = reader.post("/api/v1/ssh-keys/", {"public_key": "x"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["code"] == "insufficient_scope" and "instances" in refused.json()["detail"]
    quote = reader.post("/api/v1/quotes/", {"instance_type": "h100-80g.1x"}, format="json")
    assert quote.status_code == 403 and "orders" in quote.json()["detail"]

    billing, _ = client_with(buyer, "billing")
    assert billing.get("/api/v1/billing/usage/").status_code == 200
    listed = billing.get("/api/v1/instances/")
    assert listed.status_code == 403 and listed.json()["code"] == "insufficient_scope"
    assert "instances or read" in listed.json()["detail"]
    ceiling = billing.patch("/api/v1/me/", {"spend_limit_per_hour": "5.00"}, format="json")
    assert ceiling.status_code == 200, ceiling.content
    buyer.refresh_from_db()
    assert str(buyer.spend_limit_per_hour) == "5.00"

    orders_only, _ = client_with(buyer, "orders")
    assert orders_only.patch("/api/v1/me/", {"spend_limit_per_hour": "9.00"}, format="json").status_code == 403
    buyer.refresh_from_db()
    assert str(buyer.spend_limit_per_hour) == "5.00"  # nothing written by the refused request
    # The public catalog takes any key.
    assert orders_only.get("/api/v1/offers/").status_code == 200


def test_supplier_actions_need_the_supplier_scope(supplier):
    buyer_like, _ = client_with(supplier, "read", "orders", "instances", "billing")
    assert buyer_like.get("/api/v1/hosts/").status_code == 200  # reading: read
    created = buyer_like.post("/api/v1/hosts/", {"name": "x"}, format="json")
    assert created.status_code == 403 and "supplier" in created.json()["detail"]
    full, _ = client_with(supplier, *DEFAULT_SCOPES)
    assert full.post("/api/v1/hosts/", {"name": "x"}, format="json").status_code == 400  # past the scope check


def test_managing_keys_with_a_key_needs_one_that_can_do_everything(buyer):
    narrow, narrow_key = client_with(buyer, "read", "orders")
    assert narrow.get("/api/v1/api-keys/").status_code == 200
    refused = narrow.delete(f"/api/v1/api-keys/{narrow_key.pk}/")
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"
    full, _ = client_with(buyer, *DEFAULT_SCOPES)
    assert full.delete(f"/api/v1/api-keys/{narrow_key.pk}/").status_code == 204
    narrow_key.refresh_from_db()
    assert narrow_key.revoked_at is not None


def test_a_staff_members_key_acts_as_staff_only_with_the_staff_scope():
    staff = UserFactory(is_staff=True)
    ordinary, _ = client_with(staff, *DEFAULT_SCOPES)
    assert ordinary.get("/api/v1/me/").json()["is_staff"] is False
    resolve = ordinary.post("/api/v1/problem-reports/1/resolve/", {"reason": "x"}, format="json")
    assert resolve.status_code == 403 and "staff" in resolve.json()["detail"]
    staff.refresh_from_db()
    assert staff.is_staff  # withheld for the request, never saved
    powered, _ = client_with(staff, *DEFAULT_SCOPES, "staff")
    assert powered.get("/api/v1/me/").json()["is_staff"] is True
    assert powered.post("/api/v1/problem-reports/999999/resolve/", {"reason": "x"}, format="json").status_code == 404


def test_withheld_staff_powers_cannot_be_saved():
    staff = UserFactory(is_staff=True, is_superuser=True)
    staff.withhold_staff_powers()
    with pytest.raises(RuntimeError):
        staff.save()
    with pytest.raises(RuntimeError):
        staff.save(update_fields=["is_staff"])
    staff.full_name = "Renamed"
    staff.save(update_fields=["full_name"])
    staff.refresh_from_db()
    assert staff.is_staff and staff.is_superuser and staff.full_name == "Renamed"


def test_only_staff_accounts_can_give_a_key_the_staff_scope_and_scopes_are_checked(buyer, api_client):
    for scopes, message in (
        (["staff"], "staff"),
        (["root"], "Unknown scope: root"),
        ([], "at least one scope"),
    ):
        with pytest.raises(InvalidInput, match=message):
            api_key_issue(user=buyer, name="x", scopes=scopes)
    response = api_client.post(
        "/api/v1/auth/keys/",
        {"email": buyer.email, "password": "demo12345", "name": "ci", "scopes": ["staff"]},
        format="json",
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert not ApiKey.objects.exists()
    default = api_client.post(
        "/api/v1/auth/keys/", {"email": buyer.email, "password": "demo12345", "name": "ci"}, format="json"
    )
    assert default.status_code == 201 and default.json()["scopes"] == [s.value for s in DEFAULT_SCOPES]


def test_an_expired_key_is_refused_with_its_own_code(buyer, api_client):
    response = api_client.post(
        "/api/v1/auth/keys/",
        {
            "email": buyer.email,
            "password": "demo12345",
            "name": "ci",
            "scopes": ["read"],
            "expires_at": (timezone.now() + timedelta(days=1)).isoformat(),
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["scopes"] == ["read"] and response.json()["expires_at"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['key']}")
    assert api_client.get("/api/v1/me/").status_code == 200
    with freeze_time(timezone.now() + timedelta(days=1, seconds=1)):
        expired = api_client.get("/api/v1/me/")
    assert expired.status_code == 401 and expired.json()["code"] == "api_key_expired"
    past = timezone.now() - timedelta(minutes=1)
    with pytest.raises(InvalidInput, match="future"):
        api_key_issue(user=buyer, name="x", expires_at=past)


def test_last_use_is_recorded_with_the_address_without_a_write_per_request(buyer, django_assert_num_queries):
    client, key = client_with(buyer, "read")
    client.get("/api/v1/me/", REMOTE_ADDR="203.0.113.7")
    key.refresh_from_db()
    first = key.last_used_at
    assert first is not None and key.last_used_ip == "203.0.113.7"
    client.get("/api/v1/me/", REMOTE_ADDR="203.0.113.7")
    key.refresh_from_db()
    assert key.last_used_at == first  # within the minute, same address: not written again
    client.get("/api/v1/me/", REMOTE_ADDR="198.51.100.9")
    key.refresh_from_db()
    assert key.last_used_ip == "198.51.100.9"
    # A spoofed X-Forwarded-For is ignored where the app faces clients directly.
    client.get("/api/v1/me/", REMOTE_ADDR="198.51.100.9", HTTP_X_FORWARDED_FOR="10.0.0.1")
    key.refresh_from_db()
    assert key.last_used_ip == "198.51.100.9"


def test_the_required_scope_follows_method_and_action():
    class View:
        api_key_scope = Scope.INSTANCES
        api_key_scopes = {"answer": Scope.SUPPLIER}
        action = "list"

    assert required_scopes(View(), "GET") == {"read", "instances"}
    assert required_scopes(View(), "POST") == {"instances"}
    answering = View()
    answering.action = "answer"
    assert required_scopes(answering, "POST") == {"supplier"}
    assert required_scopes(object(), "POST") is None
