import pytest

from accounts.models import ApiKey
from accounts.services import hash_api_secret
from tests.conftest import bearer_client
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def issue(client, **overrides):
    body = {"email": "buyer@example.com", "password": "demo12345", "name": "ci"} | overrides
    return client.post("/api/v1/auth/keys/", body, format="json")


def test_exchange_password_for_a_key_shown_once_and_stored_hashed(api_client, buyer):
    response = issue(api_client)
    assert response.status_code == 201, response.content
    key = response.json()["key"]
    stored = ApiKey.objects.get(pk=response.json()["id"])
    assert stored.secret_hash == hash_api_secret(key)
    assert key not in (stored.secret_hash, stored.prefix)
    # Listing never shows the key again.
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    listed = api_client.get("/api/v1/api-keys/").json()["results"]
    assert [k["name"] for k in listed] == ["ci"]
    assert "key" not in listed[0]


def test_bearer_key_authenticates_and_revocation_stops_it(api_client, buyer):
    key = issue(api_client).json()["key"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    me = api_client.get("/api/v1/me/")
    assert me.status_code == 200 and me.json()["email"] == "buyer@example.com"

    key_id = ApiKey.objects.get().id
    assert api_client.delete(f"/api/v1/api-keys/{key_id}/").status_code == 204
    response = api_client.get("/api/v1/me/")
    assert response.status_code == 401
    assert response.json()["code"] == "api_key_revoked"
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"password": "wrong"}, 401, "invalid_credentials"),
        ({"email": "nobody@example.com"}, 401, "invalid_credentials"),
        ({"email": "not-an-email"}, 400, "invalid"),
        ({"name": ""}, 400, "invalid"),
    ],
)
def test_bad_key_requests(api_client, buyer, overrides, status, code):
    response = issue(api_client, **overrides)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("Bearer cmk_nope_nope", "api_key_invalid"),
        ("Bearer", "authentication_failed"),
        ("Bearer a b", "authentication_failed"),
        ("Bearer \u00e9", "api_key_invalid"),
    ],
)
def test_garbage_bearer_headers_are_401_not_500(api_client, header, code):
    api_client.credentials(HTTP_AUTHORIZATION=header)
    response = api_client.get("/api/v1/me/")
    assert response.status_code == 401
    assert response.json()["code"] == code


def test_someone_elses_key_cannot_be_revoked(api_client, buyer):

    issue(api_client)
    theirs = ApiKey.objects.get()
    other = bearer_client(UserFactory())
    assert other.delete(f"/api/v1/api-keys/{theirs.id}/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
