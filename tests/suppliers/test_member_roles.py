"""Supplier organizations' roles: owners and admins manage the organization, its members and
documents; members manage hosts; billing sees earnings and payouts; read only sees and changes
nothing. Each is checked on the API, the pages and the services behind them."""

from decimal import Decimal

import pytest
from django.test import Client

from accounts.roles import Role
from accounts.services import api_key_issue
from marketplace.errors import ApplicationError
from suppliers.models import Membership, OrganizationInvitation
from suppliers.organizations import (
    organization_invitation_accept,
    organization_invite,
    organization_member_remove,
    organization_member_role_set,
)
from tests.conftest import bearer_client
from tests.factories import HostFactory, UserFactory

pytestmark = pytest.mark.django_db

ROLES = [Role.OWNER, Role.ADMIN, Role.MEMBER, Role.BILLING, Role.READ_ONLY]


@pytest.fixture
def crew(supplier_org, supplier):
    """One person per role in Alpha Compute (the owner is `supplier`), and one host."""
    people = {Role.OWNER: supplier}
    for role in ROLES[1:]:
        people[role] = UserFactory(email=f"{role}@alpha.example.com", role="supplier")
        Membership.objects.create(organization=supplier_org, user=people[role], role=role)
    HostFactory(organization=supplier_org, name="gpu-1")
    return people


HOST_READERS = {Role.OWNER, Role.ADMIN, Role.MEMBER, Role.READ_ONLY}
HOST_WRITERS = {Role.OWNER, Role.ADMIN, Role.MEMBER}
MONEY_READERS = {Role.OWNER, Role.ADMIN, Role.BILLING, Role.READ_ONLY}
MANAGERS = {Role.OWNER, Role.ADMIN}


@pytest.mark.parametrize("role", ROLES)
def test_hosts_by_role(crew, supplier_org, role):
    client = bearer_client(crew[role])
    host = supplier_org.hosts.get()
    listed = client.get("/api/v1/hosts/").json()["results"]
    assert len(listed) == (1 if role in HOST_READERS else 0)
    response = client.patch(f"/api/v1/hosts/{host.pk}/", {"price_per_unit_hour": "2.10"}, format="json")
    if role in HOST_WRITERS:
        assert response.status_code == 200, response.content
    elif role in HOST_READERS:
        assert response.status_code == 403 and response.json()["code"] == "role_forbids"
    else:
        assert response.status_code == 404  # billing-only people do not see hosts at all
    host.refresh_from_db()
    assert (host.price_per_unit_hour == Decimal("2.10")) == (role in HOST_WRITERS)


@pytest.mark.parametrize("role", ROLES)
def test_earnings_and_payouts_by_role(crew, role):
    client = bearer_client(crew[role])
    for path in ("/api/v1/billing/earnings/", "/api/v1/billing/payouts/"):
        response = client.get(path)
        if role in MONEY_READERS:
            assert response.status_code == 200, (path, response.content)
        else:
            assert response.status_code == 403 and response.json()["code"] == "role_forbids"


@pytest.mark.parametrize("role", ROLES)
def test_the_organization_profile_is_changed_by_owners_and_admins(crew, supplier_org, role):
    response = bearer_client(crew[role]).patch(
        "/api/v1/organization/", {"website": "https://changed.example.com"}, format="json"
    )
    supplier_org.refresh_from_db()
    if role in MANAGERS:
        assert response.status_code == 200
        assert supplier_org.website == "https://changed.example.com"
    else:
        assert response.status_code == 403 and response.json()["code"] == "role_forbids"
        assert supplier_org.website != "https://changed.example.com"


@pytest.mark.parametrize("role", ROLES)
def test_pages_by_role(crew, supplier_org, role):
    client = Client()
    client.force_login(crew[role])
    host = supplier_org.hosts.get()
    dashboard = client.get("/supplier/")
    assert dashboard.status_code == (200 if role in HOST_READERS else 403)
    delist = client.post(f"/supplier/hosts/{host.pk}/listing/", {"listed": "0"})
    host.refresh_from_db()
    assert (host.status == "delisted") == (role in HOST_WRITERS)
    assert delist.status_code in ((302,) if role in HOST_WRITERS else (403, 404))
    earnings = client.get("/billing/earnings/")
    assert earnings.status_code == (200 if role in MONEY_READERS else 403)
    members = client.get("/supplier/members/")
    assert members.status_code == 200
    assert (b"Send invitation" in members.content) == (role in MANAGERS)


@pytest.mark.parametrize("role", ROLES)
def test_only_owners_and_admins_invite_and_admins_only_below_admin(crew, role):
    for invited_role in (Role.MEMBER, Role.ADMIN):
        allowed = role == Role.OWNER or (role == Role.ADMIN and invited_role == Role.MEMBER)
        email = f"new-{invited_role}@example.com"
        if allowed:
            organization_invite(by=crew[role], email=email, role=invited_role)
        else:
            with pytest.raises(ApplicationError) as refused:
                organization_invite(by=crew[role], email=email, role=invited_role)
            assert refused.value.code == "role_forbids"
        assert OrganizationInvitation.objects.filter(email=email).exists() == allowed


def test_an_invited_person_joins_once_and_one_organization_only(crew, supplier_org, other_supplier):
    issued = organization_invite(by=crew[Role.ADMIN], email="ops@example.com", role=Role.MEMBER)
    newcomer = UserFactory(email="ops@example.com")
    client = Client()
    client.force_login(newcomer)
    page = client.get(f"/accounts/invitations/{issued.token}/")
    assert page.status_code == 200 and b"Alpha Compute" in page.content
    assert client.post(f"/accounts/invitations/{issued.token}/").status_code == 302
    newcomer.refresh_from_db()
    assert newcomer.membership.organization == supplier_org and newcomer.membership.role == Role.MEMBER
    assert newcomer.role == "supplier"
    assert client.post(f"/accounts/invitations/{issued.token}/").status_code == 409

    elsewhere = organization_invite(by=other_supplier, email="ops@example.com", role=Role.ADMIN)
    key = api_key_issue(user=newcomer, name="k", scopes=["read", "orders", "instances", "billing", "supplier"]).key
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = api.post("/api/v1/invitations/accept/", {"token": elsewhere.token}, content_type="application/json")
    assert response.status_code == 409 and response.json()["code"] == "already_member"
    with pytest.raises(ApplicationError):
        organization_invitation_accept(token=elsewhere.token, user=newcomer)


def test_roles_change_and_members_leave_but_an_owner_stays(crew, supplier):
    admin, member = crew[Role.ADMIN], crew[Role.MEMBER]
    with pytest.raises(ApplicationError) as refused:
        organization_member_role_set(by=admin, user_id=member.pk, role=Role.OWNER)
    assert refused.value.code == "role_forbids"
    assert organization_member_role_set(by=admin, user_id=member.pk, role=Role.READ_ONLY).role == Role.READ_ONLY
    organization_member_remove(by=member, user_id=member.pk)  # leaving
    assert not Membership.objects.filter(user=member).exists()
    with pytest.raises(ApplicationError) as last:
        organization_member_remove(by=supplier, user_id=supplier.pk)
    assert last.value.code == "last_owner"
    with pytest.raises(ApplicationError):
        organization_member_remove(by=admin, user_id=supplier.pk)


def test_outsiders_see_no_members_page(other_supplier, crew):
    client = Client()
    client.force_login(other_supplier)
    page = client.get("/supplier/members/")
    assert b"admin@alpha.example.com" not in page.content


@pytest.mark.parametrize("role", ROLES)
def test_members_and_invitations_over_the_api(crew, role):
    client = bearer_client(crew[role])
    members = client.get("/api/v1/organization/members/")
    assert members.status_code == 200 and len(members.json()) == 5
    invited = client.post(
        "/api/v1/organization/invitations/", {"email": "x@example.com", "role": "member"}, format="json"
    )
    listed = client.get("/api/v1/organization/invitations/")
    if role in MANAGERS:
        assert invited.status_code == 201 and [i["email"] for i in listed.json()] == ["x@example.com"]
    else:
        assert invited.status_code == 403 and invited.json()["code"] == "role_forbids"
        assert listed.status_code == 403
    demote = client.patch(f"/api/v1/organization/members/{crew[Role.MEMBER].pk}/", {"role": "read_only"}, format="json")
    assert demote.status_code == (200 if role in MANAGERS else 403)


def test_people_without_an_organization_see_no_members(buyer):
    response = bearer_client(buyer).get("/api/v1/organization/members/")
    assert response.status_code == 403 and response.json()["code"] == "not_a_supplier"
