"""/api/v1/hosts/ and /api/v1/organization/: scoping, validation, error shape."""

import pytest

from suppliers.models import Host
from tests.conftest import bearer_client
from tests.factories import HostFactory, UserFactory

pytestmark = pytest.mark.django_db

HOST_BODY = {
    "name": "api-box-1",
    "region": "us-east",
    "zone": "us-east-a",
    "pue": "1.30",
    "accelerator_model": "h100-80g",
    "accelerator_count": 8,
    "vcpus": 192,
    "ram_gb": 2048,
    "disk_gb": 16000,
    "network_up_mbps": 25000,
    "network_down_mbps": 25000,
    "price_per_unit_hour": "2.45",
    "storage_price_per_gb_month": "0.08",
    "min_rental_hours": 1,
    "slicing_policy": "fine",
    "oversubscription_ratio": "1.00",
}


def assert_error_shape(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) >= {"code", "detail", "fields"}
    assert body["code"] == code
    return body


def test_declare_a_host_by_api(supplier_client, supplier_org):
    response = supplier_client.post("/api/v1/hosts/", HOST_BODY, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert body["organization"] == supplier_org.name
    assert body["power_per_accelerator_watts"] == 700
    assert body["offers"] == []
    assert Host.objects.get(pk=body["id"]).organization == supplier_org


def test_list_shows_only_my_hosts(supplier_client, supplier_org, other_supplier_org):
    mine = HostFactory(organization=supplier_org)
    HostFactory(organization=other_supplier_org)
    response = supplier_client.get("/api/v1/hosts/")
    assert response.status_code == 200
    assert [h["id"] for h in response.json()["results"]] == [mine.id]
    assert response.json()["results"][0]["offers"]


def test_another_suppliers_host_is_a_404_for_every_method(supplier_client, other_supplier_org):
    theirs = HostFactory(organization=other_supplier_org)
    url = f"/api/v1/hosts/{theirs.id}/"
    assert_error_shape(supplier_client.get(url), 404, "not_found")
    assert_error_shape(supplier_client.patch(url, {"price_per_unit_hour": "0.01"}, format="json"), 404, "not_found")
    assert_error_shape(supplier_client.put(url, HOST_BODY, format="json"), 404, "not_found")
    assert_error_shape(supplier_client.delete(url), 404, "not_found")
    assert_error_shape(supplier_client.post(f"{url}delist/"), 404, "not_found")
    theirs.refresh_from_db()
    assert str(theirs.price_per_unit_hour) == "2.500000"


def test_staff_see_every_host(db, supplier_org, other_supplier_org):

    HostFactory(organization=supplier_org)
    HostFactory(organization=other_supplier_org)
    staff = bearer_client(UserFactory(is_staff=True))
    assert staff.get("/api/v1/hosts/").json()["count"] == 2


def test_patch_recomputes_offers(supplier_client, approved_host):
    response = supplier_client.patch(
        f"/api/v1/hosts/{approved_host.id}/", {"price_per_unit_hour": "3.10"}, format="json"
    )
    assert response.status_code == 200, response.content
    prices = {o["instance_type"]: o["price_per_hour"] for o in response.json()["offers"]}
    assert prices["h100-80g.1x"] == "3.100000"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"region": "mars-1"}, "region"),
        ({"accelerator_model": "h900"}, "accelerator_model"),
        ({"accelerator_count": -1}, "accelerator_count"),
        ({"accelerator_count": "eight"}, "accelerator_count"),
        ({"pue": "5"}, "pue"),
        ({"price_per_unit_hour": "-1"}, "price_per_unit_hour"),
        ({"price_per_unit_hour": "1.0000001"}, "price_per_unit_hour"),
        ({"slicing_policy": "random"}, "slicing_policy"),
        ({"oversubscription_ratio": "3"}, "oversubscription_ratio"),
        ({"zone": "eu-north-a"}, "zone"),
        ({"offer_ends_at": "2001-01-01T00:00:00Z"}, "offer_ends_at"),
        ({"offer_ends_at": "yesterday"}, "offer_ends_at"),
        ({"slicing_policy": "equal", "equal_slices": 3}, "equal_slices"),
        ({"vcpus": 8, "ram_gb": 16}, "slicing_policy"),
    ],
)
def test_bad_host_input_is_a_400_naming_the_field(supplier_client, change, field):
    response = supplier_client.post("/api/v1/hosts/", {**HOST_BODY, **change}, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] in ("invalid", "no_sellable_instance_type")
    assert field in body["fields"]
    assert not Host.objects.exists()


def test_malformed_json_is_a_400(supplier_client):
    response = supplier_client.generic("POST", "/api/v1/hosts/", "{not json", content_type="application/json")
    assert_error_shape(response, 400, "parse_error")


def test_buyer_without_organization_cannot_declare(api_client, buyer):

    response = bearer_client(buyer).post("/api/v1/hosts/", HOST_BODY, format="json")
    assert_error_shape(response, 403, "not_a_supplier")


def test_anonymous_is_a_401(api_client):
    assert_error_shape(api_client.get("/api/v1/hosts/"), 401, "not_authenticated")


def test_delete_and_delist(supplier_client, approved_host):
    response = supplier_client.post(f"/api/v1/hosts/{approved_host.id}/delist/")
    assert response.status_code == 200
    assert response.json()["status"] == "delisted"
    assert response.json()["offers"] == []
    assert_error_shape(supplier_client.post(f"/api/v1/hosts/{approved_host.id}/delist/"), 409, "invalid_transition")
    assert supplier_client.delete(f"/api/v1/hosts/{approved_host.id}/").status_code == 204
    assert not Host.objects.filter(pk=approved_host.id).exists()


def test_organization_onboarding_by_api(api_client, buyer):

    client = bearer_client(buyer)
    assert_error_shape(client.get("/api/v1/organization/"), 404, "not_a_supplier")
    bad = client.post("/api/v1/organization/", {"name": "X"}, format="json")
    assert bad.status_code == 400 and "contact_email" in bad.json()["fields"]
    response = client.post(
        "/api/v1/organization/",
        {
            "name": "Delta",
            "contact_name": "D",
            "contact_email": "d@example.com",
            "country": "us",
            "payout_country": "us",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "pending"
    assert client.get("/api/v1/me/").json()["organization"]["name"] == "Delta"
    assert_error_shape(
        client.post(
            "/api/v1/organization/",
            {
                "name": "Again",
                "contact_name": "D",
                "contact_email": "d@example.com",
                "country": "US",
                "payout_country": "US",
            },
            format="json",
        ),
        409,
        "already_member",
    )


def test_names_with_control_characters_are_refused(supplier_client):
    response = supplier_client.patch("/api/v1/organization/", {"name": "Acme\u000e\n"}, format="json")
    assert response.status_code == 400 and "name" in response.json()["fields"]
    response = supplier_client.post("/api/v1/hosts/", {**HOST_BODY, "name": "box\x00"}, format="json")
    assert response.status_code == 400 and "name" in response.json()["fields"]
