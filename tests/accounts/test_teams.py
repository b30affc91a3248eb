"""Teams: a buyer organization whose account pays. People act for it by role — with their own key
and `X-Team`, with a team key, or in the browser after switching — and every role is checked on
the API and on the pages. Invitations go by email and are accepted once by the invited address."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db import close_old_connections, connection
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from accounts.models import ApiKey, Team, TeamInvitation, TeamMembership, User
from accounts.roles import Role
from accounts.scopes import DEFAULT_SCOPES
from accounts.services import api_key_issue, notify, user_create
from accounts.teams import (
    team_create,
    team_invitation_accept,
    team_invite,
    team_member_remove,
    team_member_role_set,
)
from billing.ledger import credit_grant
from billing.models import TopUp
from billing.selectors import wallet_balance
from marketplace.errors import ApplicationError
from marketplace.models import WebhookDelivery, WebhookEndpoint
from orders.models import Order
from tests.billing.test_stripe import stripe_api  # noqa: F401 - a fixture: a local fake of Stripe's API
from tests.conftest import bearer_client
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data

pytestmark = pytest.mark.django_db

ROLES = [Role.OWNER, Role.ADMIN, Role.MEMBER, Role.BILLING, Role.READ_ONLY]


@pytest.fixture
def team():
    """A team with one person in each role and $200 in its wallet (its people have $1000 each)."""
    owner = UserFactory(email="owner@team.example.com")
    team = team_create(owner=owner, name="Vision research")
    for role in ROLES[1:]:
        TeamMembership.objects.create(team=team, user=UserFactory(email=f"{role}@team.example.com"), role=role)
    credit_grant(user=team.account, amount=Decimal("200"), reason="Team credit", key=f"team-credit:{team.pk}")
    return team


@pytest.fixture
def l4_offer():
    return HostFactory(organization=OrganizationFactory(), name="l4-a", **l4_host_data())


def person(team: Team, role: str) -> User:
    return team.memberships.get(role=role).user


def acting_client(team: Team, role: str):
    """A person's own key (every scope) sending X-Team."""
    client = bearer_client(person(team, role))
    client.credentials(HTTP_AUTHORIZATION=client._credentials["HTTP_AUTHORIZATION"], HTTP_X_TEAM=str(team.pk))
    return client


def browser_acting(team: Team, role: str) -> Client:
    client = Client()
    client.force_login(person(team, role))
    assert client.post("/accounts/act/", {"team": team.pk}).status_code == 302
    return client


# (method, path, body, roles allowed). What the role does not allow is 403 `role_forbids`.
API_MATRIX = [
    ("get", "/api/v1/instances/", None, {Role.OWNER, Role.ADMIN, Role.MEMBER, Role.READ_ONLY}),
    ("get", "/api/v1/orders/", None, {Role.OWNER, Role.ADMIN, Role.MEMBER, Role.READ_ONLY}),
    ("post", "/api/v1/quotes/", {"instance_type": "l4-24g.1x"}, {Role.OWNER, Role.ADMIN, Role.MEMBER}),
    ("get", "/api/v1/billing/balance/", None, {Role.OWNER, Role.ADMIN, Role.BILLING, Role.READ_ONLY}),
    ("get", "/api/v1/billing/ledger/", None, {Role.OWNER, Role.ADMIN, Role.BILLING, Role.READ_ONLY}),
    ("patch", "/api/v1/me/", {"spend_limit_per_hour": "40.00"}, {Role.OWNER, Role.ADMIN, Role.BILLING}),
    ("get", "/api/v1/api-keys/", None, {Role.OWNER, Role.ADMIN, Role.READ_ONLY}),
    ("get", "/api/v1/webhook-endpoints/", None, {Role.OWNER, Role.ADMIN, Role.READ_ONLY}),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "body", "allowed"), API_MATRIX, ids=[f"{m} {p}" for m, p, *_ in API_MATRIX])
def test_api_for_a_team_follows_the_role(team, l4_offer, role, method, path, body, allowed):
    response = getattr(acting_client(team, role), method)(path, body, format="json")
    if role in allowed:
        assert response.status_code == 200, (role, response.content)
    else:
        assert response.status_code == 403, (role, response.content)
        assert response.json()["code"] == "role_forbids"
        assert "Vision research" in response.json()["detail"]


def test_acting_for_a_team_reads_and_changes_the_teams_account_not_the_persons(team):
    billing = acting_client(team, Role.BILLING)
    assert billing.get("/api/v1/billing/balance/").json()["balance"] == "200.000000"
    assert billing.patch("/api/v1/me/", {"spend_limit_per_hour": "40.00"}, format="json").status_code == 200
    team.account.refresh_from_db()
    assert team.account.spend_limit_per_hour == Decimal("40.00")
    own = person(team, Role.BILLING)
    own.refresh_from_db()
    assert own.spend_limit_per_hour == Decimal("100.00")
    assert bearer_client(own).get("/api/v1/billing/balance/").json()["balance"] == "1000.000000"


def test_a_key_cannot_do_more_for_the_team_than_it_can_do_itself(team):
    owner = person(team, Role.OWNER)
    read_key = api_key_issue(user=owner, name="reader", scopes=["read"]).key
    client = bearer_client(owner)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {read_key}", HTTP_X_TEAM=str(team.pk))
    response = client.patch("/api/v1/me/", {"spend_limit_per_hour": "1.00"}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "insufficient_scope"


def test_x_team_naming_a_team_one_is_not_in_is_refused(team):
    outsider = UserFactory(email="outsider@example.com")
    for value in (str(team.pk), "999999", "abc"):
        client = bearer_client(outsider)
        client.credentials(HTTP_AUTHORIZATION=client._credentials["HTTP_AUTHORIZATION"], HTTP_X_TEAM=value)
        response = client.get("/api/v1/billing/balance/")
        assert response.status_code == 403 and response.json()["code"] == "not_a_member"


def test_team_keys_act_for_the_team_and_outlive_their_creator(team):
    admin = person(team, Role.ADMIN)
    key = api_key_issue(user=team.account, name="ci", scopes=DEFAULT_SCOPES)
    team_member_remove(team_id=team.pk, by=admin, user_id=admin.pk)
    client = bearer_client(UserFactory())
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.key}")
    assert client.get("/api/v1/billing/balance/").json()["balance"] == "200.000000"
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.key}", HTTP_X_TEAM=str(team.pk))
    assert client.get("/api/v1/billing/balance/").json()["code"] == "role_forbids"


@pytest.mark.parametrize("role", ROLES)
def test_team_keys_are_managed_by_owners_and_admins_only(team, role):
    key = api_key_issue(user=team.account, name="ci", scopes=DEFAULT_SCOPES).api_key
    response = acting_client(team, role).delete(f"/api/v1/api-keys/{key.pk}/")
    if role in (Role.OWNER, Role.ADMIN):
        assert response.status_code == 204
        key.refresh_from_db()
        assert key.revoked_at is not None
    else:
        assert response.status_code == 403
        assert ApiKey.objects.get(pk=key.pk).revoked_at is None


def test_an_order_for_the_team_is_the_teams_and_seen_by_the_team_only(team, l4_offer):
    body = {"instance_type": "l4-24g.1x", "count": 1, "image": "pytorch/pytorch:2.5.1"}
    placed = acting_client(team, Role.MEMBER).post("/api/v1/orders/", body, format="json")
    assert placed.status_code == 201, placed.content
    order = Order.objects.get()
    assert order.buyer == team.account
    assert placed.json()["placed_by"] == "member@team.example.com"
    seen_by = acting_client(team, Role.READ_ONLY).get("/api/v1/orders/").json()["results"]
    assert [o["id"] for o in seen_by] == [order.pk]
    assert bearer_client(person(team, Role.MEMBER)).get("/api/v1/orders/").json()["results"] == []
    assert bearer_client(UserFactory()).get(f"/api/v1/orders/{order.pk}/").status_code == 404
    page = browser_acting(team, Role.READ_ONLY).get("/instances/")
    assert b"Instances of Vision research" in page.content and b"member@team.example.com" in page.content


# --- Pages ------------------------------------------------------------------------------------------

PAGE_MATRIX = [
    ("get", "/instances/", {Role.OWNER, Role.ADMIN, Role.MEMBER, Role.READ_ONLY}),
    ("get", "/billing/", {Role.OWNER, Role.ADMIN, Role.BILLING, Role.READ_ONLY}),
    ("post", "/instances/spend-limit/", {Role.OWNER, Role.ADMIN, Role.BILLING}),
    ("get", "/accounts/api-keys/", {Role.OWNER, Role.ADMIN, Role.READ_ONLY}),
    ("get", "/webhooks/", {Role.OWNER, Role.ADMIN, Role.READ_ONLY}),
    ("get", "/templates/", {Role.OWNER, Role.ADMIN, Role.MEMBER, Role.READ_ONLY}),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "allowed"), PAGE_MATRIX, ids=[f"{m} {p}" for m, p, _ in PAGE_MATRIX])
def test_pages_for_a_team_follow_the_role(team, role, method, path, allowed):
    client = browser_acting(team, role)
    response = getattr(client, method)(path, {"spend_limit_per_hour": "30"} if method == "post" else None)
    if role in allowed:
        assert response.status_code in (200, 302), (role, response.status_code)
    else:
        assert response.status_code == 403
        assert b"does not allow this" in response.content


def test_the_browser_api_follows_the_role_too(team):
    client = browser_acting(team, Role.MEMBER)
    response = client.get("/api/v1/billing/balance/")
    assert response.status_code == 403 and response.json()["code"] == "role_forbids"
    assert browser_acting(team, Role.BILLING).get("/api/v1/billing/balance/").json()["balance"] == "200.000000"


def test_a_removed_member_stops_acting_for_the_team_at_once(team):
    client = browser_acting(team, Role.MEMBER)
    assert b"Vision research" in client.get("/instances/").content
    member = person(team, Role.MEMBER)
    team_member_remove(team_id=team.pk, by=person(team, Role.OWNER), user_id=member.pk)
    page = client.get("/billing/")
    assert page.status_code == 200
    assert page.context["user"] == member  # acting for themselves again
    assert "acting_team" not in client.session


def test_a_team_cannot_start_a_supplier_organization(team):
    client = browser_acting(team, Role.OWNER)
    body = {"name": "Team Co", "contact_name": "A", "contact_email": "a@example.com", "country": "US"}
    client.post("/supplier/onboarding/", {**body, "payout_country": "US"})
    assert not team.account.organizations.exists()


def test_every_page_names_what_a_team_role_needs_to_open_it():
    """Pages are closed to people acting for a team unless they name their area (the middleware
    refuses the rest): this lists any page that forgot, so none is closed or open by accident."""
    missing = []

    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if str(pattern.pattern).startswith(("admin/", "api/")):
                    continue
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                view = pattern.callback
                is_api_view = hasattr(getattr(view, "cls", None), "authentication_classes")
                if not is_api_view and not hasattr(view, "scope_area"):
                    missing.append(prefix + str(pattern.pattern))

    walk(get_resolver().url_patterns)
    assert missing == []


# --- Membership rules --------------------------------------------------------------------------------


def test_invitation_is_emailed_and_accepted_once_by_the_invited_address(team):
    mail.outbox.clear()
    owner = person(team, Role.OWNER)
    with_captured = team_invite(team_id=team.pk, by=owner, email="New.Person@Example.com", role=Role.MEMBER)
    assert with_captured.invitation.email == "new.person@example.com"
    # The email leaves only once the transaction commits (pytest-django's db fixture runs on_commit
    # callbacks only in transactional tests), so the link is checked on the issued invitation.
    assert with_captured.url.endswith(f"/accounts/invitations/{with_captured.token}/")
    stranger = UserFactory(email="stranger@example.com")
    with pytest.raises(ApplicationError) as refused:
        team_invitation_accept(token=with_captured.token, user=stranger)
    assert refused.value.code == "invitation_for_another_email"
    invited = UserFactory(email="new.person@example.com")
    joined = team_invitation_accept(token=with_captured.token, user=invited)
    assert joined.role == Role.MEMBER
    with pytest.raises(ApplicationError) as again:
        team_invitation_accept(token=with_captured.token, user=invited)
    assert again.value.code == "invitation_closed"
    with pytest.raises(ApplicationError) as bogus:
        team_invitation_accept(token="not-a-token", user=invited)
    assert bogus.value.code == "invitation_invalid"


def test_expired_and_revoked_invitations_cannot_be_accepted(team, client):
    owner = person(team, Role.OWNER)
    expired = team_invite(team_id=team.pk, by=owner, email="late@example.com", role=Role.MEMBER)
    TeamInvitation.objects.filter(pk=expired.invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    late = UserFactory(email="late@example.com")
    with pytest.raises(ApplicationError) as refused:
        team_invitation_accept(token=expired.token, user=late)
    assert refused.value.code == "invitation_closed"
    first = team_invite(team_id=team.pk, by=owner, email="late@example.com", role=Role.MEMBER)
    second = team_invite(team_id=team.pk, by=owner, email="late@example.com", role=Role.READ_ONLY)  # replaces
    client.force_login(late)
    response = client.post(f"/accounts/invitations/{first.token}/")
    assert response.status_code == 409
    assert not team.memberships.filter(user=late).exists()
    assert client.post(f"/accounts/invitations/{second.token}/").status_code == 302
    assert team.memberships.get(user=late).role == Role.READ_ONLY


@pytest.mark.parametrize("role", [Role.MEMBER, Role.BILLING, Role.READ_ONLY])
def test_only_owners_and_admins_invite(team, role):
    with pytest.raises(ApplicationError) as refused:
        team_invite(team_id=team.pk, by=person(team, role), email="x@example.com", role=Role.READ_ONLY)
    assert refused.value.code == "role_forbids"
    response = acting_client(team, role).post(
        f"/api/v1/teams/{team.pk}/invitations/", {"email": "x@example.com", "role": "read_only"}, format="json"
    )
    assert response.status_code == 403
    assert not TeamInvitation.objects.filter(email="x@example.com").exists()


def test_admins_cannot_make_or_unmake_owners_and_admins(team):
    admin = person(team, Role.ADMIN)
    member = person(team, Role.MEMBER)
    owner = person(team, Role.OWNER)
    for kwargs in (
        {"user_id": member.pk, "role": Role.ADMIN},
        {"user_id": member.pk, "role": Role.OWNER},
        {"user_id": owner.pk, "role": Role.MEMBER},
    ):
        with pytest.raises(ApplicationError) as refused:
            team_member_role_set(team_id=team.pk, by=admin, **kwargs)
        assert refused.value.code == "role_forbids"
    with pytest.raises(ApplicationError):
        team_member_remove(team_id=team.pk, by=admin, user_id=owner.pk)
    with pytest.raises(ApplicationError):
        team_invite(team_id=team.pk, by=admin, email="boss@example.com", role=Role.ADMIN)
    assert team_member_role_set(team_id=team.pk, by=admin, user_id=member.pk, role=Role.BILLING).role == Role.BILLING
    assert team_member_role_set(team_id=team.pk, by=owner, user_id=member.pk, role=Role.ADMIN).role == Role.ADMIN


def test_a_team_keeps_an_owner(team):
    owner = person(team, Role.OWNER)
    for attempt in (
        lambda: team_member_remove(team_id=team.pk, by=owner, user_id=owner.pk),
        lambda: team_member_role_set(team_id=team.pk, by=owner, user_id=owner.pk, role=Role.ADMIN),
    ):
        with pytest.raises(ApplicationError) as refused:
            attempt()
        assert refused.value.code == "last_owner"
    admin = person(team, Role.ADMIN)
    team_member_role_set(team_id=team.pk, by=owner, user_id=admin.pk, role=Role.OWNER)
    team_member_remove(team_id=team.pk, by=owner, user_id=owner.pk)  # now they may leave
    assert list(team.memberships.filter(role=Role.OWNER).values_list("user", flat=True)) == [admin.pk]


@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner():
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    first, second = UserFactory(email="a@example.com"), UserFactory(email="b@example.com")
    team = team_create(owner=first, name="Race")
    TeamMembership.objects.create(team=team, user=second, role=Role.OWNER)
    barrier = threading.Barrier(2)
    outcomes = []

    def demote(by, other):
        try:
            barrier.wait()
            team_member_role_set(team_id=team.pk, by=by, user_id=other.pk, role=Role.MEMBER)
            outcomes.append("done")
        except ApplicationError as refused:
            outcomes.append(refused.code)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=demote, args=pair) for pair in ((first, second), (second, first))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) in (["done", "role_forbids"], ["done", "not_a_member"])
    assert team.memberships.filter(role=Role.OWNER).count() == 1


def test_a_team_account_cannot_log_in_and_its_address_cannot_be_taken(team, client):
    assert not team.account.has_usable_password()
    client.post("/accounts/login/", {"username": team.account.email, "password": ""})
    assert "_auth_user_id" not in client.session
    with pytest.raises(ApplicationError):
        user_create(email="team-abc@teams.invalid", password="a-long-password-1")


@pytest.mark.django_db(transaction=True)
def test_team_notifications_reach_owners_and_admins_by_email():
    owner = UserFactory(email="owner@team.example.com")
    team = team_create(owner=owner, name="Mail")
    TeamMembership.objects.create(team=team, user=UserFactory(email="admin@team.example.com"), role=Role.ADMIN)
    TeamMembership.objects.create(team=team, user=UserFactory(email="member@team.example.com"), role=Role.MEMBER)
    mail.outbox.clear()
    notify(user=team.account, kind="balance_low", title="Your balance is low")
    assert sorted(mail.outbox[0].to) == ["admin@team.example.com", "owner@team.example.com"]
    assert team.account.notifications.count() == 1


def test_the_team_pages_manage_members(team, client):
    owner = person(team, Role.OWNER)
    client.force_login(owner)
    page = client.get(f"/accounts/teams/{team.pk}/")
    assert page.status_code == 200 and b"read_only@team.example.com" in page.content
    response = client.post(f"/accounts/teams/{team.pk}/", {"action": "invite", "email": "bad", "role": "member"})
    assert response.status_code == 200 and b"Enter a valid email address" in response.content
    client.post(f"/accounts/teams/{team.pk}/", {"action": "invite", "email": "new@example.com", "role": "billing"})
    assert TeamInvitation.objects.get(email="new@example.com").role == Role.BILLING
    reader = person(team, Role.READ_ONLY)
    client.post(f"/accounts/teams/{team.pk}/", {"action": "role", "user": reader.pk, "role": "member"})
    assert team.memberships.get(user=reader).role == Role.MEMBER
    sly = UserFactory(email="x'-alert`1`-'@example.com")
    TeamMembership.objects.create(team=team, user=sly, role=Role.MEMBER)
    page = client.get(f"/accounts/teams/{team.pk}/").content.decode()
    escaped = "Remove x\\u0027\\u002Dalert\\u00601\\u0060\\u002D\\u0027@example.com?"
    assert escaped in page  # no way out of the JavaScript string
    outsider = Client()
    outsider.force_login(UserFactory())
    assert outsider.get(f"/accounts/teams/{team.pk}/").status_code == 404
    assert wallet_balance(team.account) == Decimal("200")


def test_a_team_is_throttled_as_one_account_whoever_calls_for_it(team, settings):
    settings.API_RATE_LIMITS = {"key": "", "account": "4/minute"}
    callers = [acting_client(team, Role.OWNER), acting_client(team, Role.READ_ONLY)]
    assert [callers[i % 2].get("/api/v1/billing/balance/").status_code for i in range(4)] == [200] * 4
    assert callers[1].get("/api/v1/billing/balance/").status_code == 429
    owner_alone = bearer_client(person(team, Role.OWNER))  # the owner's own account has its own limit
    assert owner_alone.get("/api/v1/billing/balance/").status_code == 200


def test_a_team_top_up_fills_the_team_wallet_and_the_receipt_goes_to_the_payer(team, stripe_api):  # noqa: F811
    response = acting_client(team, Role.BILLING).post("/api/v1/billing/top-ups/", {"amount": "25.00"}, format="json")
    assert response.status_code == 201, response.content
    assert TopUp.objects.get().user == team.account
    (call,) = stripe_api.calls("/v1/checkout/sessions")
    assert call["body"]["customer_email"] == "billing@team.example.com"
    team_key = api_key_issue(user=team.account, name="ci", scopes=DEFAULT_SCOPES).key
    client = bearer_client(UserFactory())
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {team_key}")
    assert client.post("/api/v1/billing/top-ups/", {"amount": "25.00"}, format="json").status_code == 201
    assert "customer_email" not in stripe_api.calls("/v1/checkout/sessions")[1]["body"]  # nobody reads that address


def test_team_webhooks_belong_to_the_team_and_hear_its_notifications(team):
    owner = acting_client(team, Role.OWNER)
    body = {"url": "https://127.0.0.1:9/hooks", "events": ["notification.balance_low"]}
    created = owner.post("/api/v1/webhook-endpoints/", body, format="json")
    assert created.status_code == 201, created.content
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.user == team.account
    notify(user=team.account, kind="balance_low", title="Your balance is low")
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1
    assert acting_client(team, Role.MEMBER).post("/api/v1/webhook-endpoints/", body, format="json").status_code == 403
    assert bearer_client(person(team, Role.OWNER)).get("/api/v1/webhook-endpoints/").json()["results"] == []


def test_me_says_which_team_a_request_acts_for(team):
    me = acting_client(team, Role.READ_ONLY).get("/api/v1/me/").json()
    assert me["team"] == {"id": team.pk, "name": "Vision research", "role": "read_only"}
    assert me["email"] == "read_only@team.example.com"
    assert bearer_client(person(team, Role.READ_ONLY)).get("/api/v1/me/").json()["team"] is None


def test_pages_offer_only_the_changes_the_role_allows(team):
    reader = browser_acting(team, Role.READ_ONLY)
    assert b"Set limit" not in reader.get("/instances/").content
    assert b"Pay with Stripe" not in reader.get("/billing/").content
    payer = browser_acting(team, Role.BILLING)
    assert b"Pay with Stripe" in payer.get("/billing/").content
    personal = Client()
    personal.force_login(person(team, Role.READ_ONLY))
    assert b"Set limit" in personal.get("/instances/").content  # for oneself, everything


@pytest.mark.parametrize(
    "email", ["not-an-address", "a b@example.com", "team-1@teams.invalid", "x@" + "a" * 300 + ".com"]
)
def test_invitations_go_only_to_real_mailboxes(team, email):
    with pytest.raises(ApplicationError) as refused:
        team_invite(team_id=team.pk, by=person(team, Role.OWNER), email=email, role=Role.MEMBER)
    assert "email" in refused.value.fields
    assert not TeamInvitation.objects.exists()
