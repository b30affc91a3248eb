"""Real pages in headless Chromium (Debian's `chromium`), driven by Playwright, against live_server."""

import os
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from accounts.services import notify
from marketplace.models import AcceleratorModel, Offer, Region, WebhookEndpoint
from orders.models import Instance
from suppliers.models import Host
from tests.e2e.browsing import CHROMIUM, browser_session, log_in
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        CHROMIUM is None and os.environ.get("REQUIRE_BROWSER") != "1",
        reason="Chromium is not installed (CI installs it and requires this test)",
    ),
]


@pytest.fixture
def page(request, monkeypatch):
    # Playwright runs an event loop in this thread; the ORM calls in the test body are still
    # synchronous and sequential.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with browser_session(request.node.name) as session:
        yield session.page


def test_buyer_filters_and_sorts_offers(catalog, live_server, page):
    organization = OrganizationFactory()
    HostFactory(organization=organization, name="gpu-box")
    HostFactory(
        organization=organization,
        name="dsa-box",
        accelerator_model=AcceleratorModel.objects.get(slug="gaudi2-96g"),
        region=Region.objects.get(code="eu-north"),
        zone=None,
        price_per_unit_hour=Decimal("0.95"),
    )

    page.goto(f"{live_server.url}/offers/")
    page.select_option("#id_accelerator_kind", "dsa")
    page.click("text=Apply")
    rows = page.locator("table tbody tr")
    assert rows.count() > 0
    assert all("Gaudi 2" in text for text in rows.all_inner_texts())

    page.click("a.sort-link:has-text('$/hour')")
    page.click("a.sort-link:has-text('$/hour')")  # second click: most expensive first
    prices = [Decimal(t.strip().lstrip("$")) for t in page.locator("table tbody tr td:nth-child(7)").all_inner_texts()]
    assert prices == sorted(prices, reverse=True)
    assert "ordering=-price_per_hour" in page.url and "accelerator_kind=dsa" in page.url


def test_supplier_sees_validation_messages_then_declares_a_host(catalog, live_server, page):
    user = UserFactory(email="s@example.com", role="supplier")
    OrganizationFactory(owner=user)

    log_in(page, live_server.url, "s@example.com")
    page.click("text=+ Declare a host")

    page.fill("#id_name", "browser-box")
    page.select_option("#id_region", label="US East (Ashburn, VA) — cloud")
    page.select_option("#id_accelerator_model", label="NVIDIA L4")
    for field, value in {
        "accelerator_count": "2",
        "vcpus": "32",
        "ram_gb": "192",
        "disk_gb": "1000",
        "network_up_mbps": "10000",
        "network_down_mbps": "10000",
        "price_per_unit_hour": "0.5",
        "pue": "0.7",
    }.items():
        page.fill(f"#id_{field}", value)
    page.click("button:has-text('Declare host')")
    assert page.locator(".errorlist").first.is_visible()
    assert "greater than or equal to 1" in page.content()
    assert not Host.objects.exists()

    page.fill("#id_pue", "1.3")
    page.click("button:has-text('Declare host')")
    page.wait_for_url("**/supplier/hosts/*/")
    assert "Pending verification" in page.content()
    assert "l4-24g.1x" in page.content()  # what it will offer once approved
    assert Host.objects.get().name == "browser-box"


def test_buyer_rents_with_a_live_quote_then_stops_the_instance(catalog, live_server, page):
    HostFactory(organization=OrganizationFactory(), name="l4-box", **l4_host_data())
    UserFactory(email="b@example.com")
    offer_id = Offer.objects.get(instance_type__name="l4-24g.1x").pk

    log_in(page, live_server.url, "b@example.com")
    page.goto(f"{live_server.url}/offers/{offer_id}/")
    page.wait_for_selector("#quote dl")
    page.fill("#id_count", "3")
    page.wait_for_function("document.querySelector('#quote').innerText.includes('for 3 instances')")
    assert "$1.2000" in page.inner_text("#quote")
    page.check("input[value=spot]")
    page.fill("#id_max_price_per_hour", "0.10")
    page.wait_for_function("document.querySelector('#quote').innerText.includes('lowest accepted bid')")
    page.check("input[value=on_demand]")
    page.fill("#id_max_price_per_hour", "")
    page.fill("#id_image", "pytorch/pytorch:2.5.1")  # no curated templates in this database

    page.on("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Rent now')")
    page.wait_for_url("**/instances/")
    assert page.locator("#instance-rows tr").count() == 3
    page.click("#instance-rows tr:first-child a")
    page.click("button:has-text('Stop')")
    page.wait_for_selector("text=Stop requested.")
    assert Instance.objects.filter(status="stopping").count() == 1


def test_buyer_adds_an_ssh_key_sees_the_error_then_the_fingerprint(catalog, live_server, page, tmp_path):
    UserFactory(email="k@example.com")
    log_in(page, live_server.url, "k@example.com")
    page.click(".who >> text=SSH keys")

    page.fill("#id_public_key", "ssh-rsa not-a-key")
    page.click("button:has-text('Add key')")
    assert "Not an OpenSSH public key" in page.locator("form.card").inner_text()

    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    page.fill("#id_public_key", f"{line} k@laptop")
    page.click("button:has-text('Add key')")
    row = page.locator("table tbody tr").first.inner_text()
    assert "k@laptop" in row and "SHA256:" in row and "ssh-ed25519" in row
    page.screenshot(path=str(tmp_path / "ssh-keys.png"), full_page=True)


def test_buyer_creates_a_scoped_expiring_api_key_and_sees_it_listed(catalog, live_server, page, tmp_path):
    UserFactory(email="keys@example.com")
    log_in(page, live_server.url, "keys@example.com")
    page.click(".who >> text=API keys")
    assert page.locator("input[name=scopes][value=staff]").count() == 0  # not a staff account

    for scope in ("orders", "instances", "billing", "supplier"):  # all but read come checked: uncheck
        page.uncheck(f"input[name=scopes][value={scope}]")
    page.uncheck("input[name=scopes][value=read]")
    page.fill("#id_name", "dashboard")
    page.click("button:has-text('Create key')")
    assert "required" in page.locator("form.card").inner_text().lower()  # no scope: a message, no key

    page.check("input[name=scopes][value=read]")
    page.fill("#id_name", "dashboard")
    page.select_option("#id_expires_in_days", "30")
    page.click("button:has-text('Create key')")
    key = page.locator("code.key").inner_text()
    assert key.startswith("cmk_")
    row = page.locator("table tbody tr").first.inner_text()
    assert "dashboard" in row and "read" in row and "orders" not in row and "never" in row  # never used
    assert "active" in row
    page.screenshot(path=str(tmp_path / "api-keys.png"), full_page=True)


def test_buyer_adds_a_webhook_endpoint_and_sees_its_deliveries(catalog, live_server, page, tmp_path):

    user = UserFactory(email="hooks@example.com")
    log_in(page, live_server.url, "hooks@example.com")
    page.click(".who >> text=Webhooks")
    page.fill("#id_url", "http://127.0.0.1:9/hooks")
    page.click("button:has-text('Add endpoint')")
    assert page.locator("code.key").inner_text().startswith("whsec_")
    page.screenshot(path=str(tmp_path / "webhooks.png"), full_page=True)
    notify(user=user, kind="balance_low", title="Your balance is low")
    page.click("table >> text=127.0.0.1:9/hooks")
    row = page.locator("table tbody tr").first.inner_text()
    assert "notification.balance_low" in row and "pending" in row
    assert WebhookEndpoint.objects.get().events == ["*"]
    page.screenshot(path=str(tmp_path / "webhook-deliveries.png"), full_page=True)
