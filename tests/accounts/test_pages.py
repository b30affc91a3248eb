from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import User

pytestmark = pytest.mark.django_db


def test_sign_up_as_supplier_then_onboard(client):
    response = client.post(
        reverse("accounts:signup"),
        {
            "email": "New@Example.com",
            "password1": "a-long-passphrase-9",
            "password2": "a-long-passphrase-9",
            "role": "supplier",
        },
    )
    assert response.status_code == 302
    user = User.objects.get(email="new@example.com")
    assert user.role == "supplier"
    # Suppliers land on onboarding until they have an organization.
    follow = client.get(reverse("accounts:home"), follow=True)
    assert follow.redirect_chain[-1][0] == reverse("suppliers:onboarding")


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"email": "nope", "password1": "a-long-passphrase-9", "password2": "a-long-passphrase-9"},
            "email",
            "valid email",
        ),
        (
            {"email": "a@example.com", "password1": "a-long-passphrase-9", "password2": "different-9"},
            "password2",
            "differ",
        ),
        ({"email": "a@example.com", "password1": "123", "password2": "123"}, "password1", "too short"),
        (
            {"email": "buyer@example.com", "password1": "a-long-passphrase-9", "password2": "a-long-passphrase-9"},
            "email",
            "already exists",
        ),
    ],
)
def test_sign_up_errors_are_shown_on_the_form(client, buyer, data, field, message):
    response = client.post(reverse("accounts:signup"), {"role": "buyer", **data})
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert User.objects.count() == 1


def test_log_in_by_email(client, buyer):
    response = client.post(reverse("accounts:login"), {"username": "buyer@example.com", "password": "demo12345"})
    assert response.status_code == 302
    client.logout()
    bad = client.post(reverse("accounts:login"), {"username": "buyer@example.com", "password": "wrong"})
    assert bad.status_code == 200 and bad.context["form"].errors


def test_api_key_page_shows_a_new_key_once(client, buyer):
    client.force_login(buyer)
    response = client.post(
        reverse("accounts:api_keys"), {"name": "laptop", "scopes": ["read", "instances"], "expires_in_days": "30"}
    )
    issued = response.context["issued"]
    assert issued.key in response.content.decode()
    assert issued.api_key.scopes == ["read", "instances"]
    assert timedelta(days=29) < issued.api_key.expires_at - timezone.now() <= timedelta(days=30)
    page = client.get(reverse("accounts:api_keys")).content.decode()
    assert issued.key not in page and "instances" in page


def test_api_key_page_asks_for_a_scope_and_offers_staff_only_to_staff(client, buyer):
    client.force_login(buyer)
    response = client.post(reverse("accounts:api_keys"), {"name": "laptop"})
    assert response.context["issued"] is None and "scopes" in response.context["form"].errors
    assert 'value="staff"' not in response.content.decode()
    forged = client.post(reverse("accounts:api_keys"), {"name": "laptop", "scopes": ["staff"]})
    assert forged.context["issued"] is None and "scopes" in forged.context["form"].errors
    assert not buyer.api_keys.exists()
