"""The main flows in a real browser (Debian's Chromium via Playwright) against live_server: a supplier's
host and its analytics; a new buyer who signs up, pays through the demo payment server, finds an offer
on the market-depth page, rents it, reaches it and sees the charge on the dashboard; staff's market
overview. Every page is checked for console errors, charts are drawn, phone width does not overflow,
and each main page is saved as a screenshot under var/artifacts/screenshots/."""

import os
import re
from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import User
from billing.demo_stripe import DemoStripeServer
from billing.selectors import wallet_balance
from marketplace.models import AcceleratorModel, InstanceType, Offer, Region
from orders.agent import instance_agent_report
from orders.models import Instance
from tests.e2e.browsing import CHROMIUM, PHONE, browser_session, log_in
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data
from tests.orders.conftest import order, usage_paid

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        CHROMIUM is None and os.environ.get("REQUIRE_BROWSER") != "1",
        reason="Chromium is not installed (CI installs it and requires this test)",
    ),
]


@pytest.fixture
def browser(request, monkeypatch):
    # Playwright runs an event loop in this thread; the ORM calls of the test body stay synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with browser_session(request.node.name) as session:
        yield session
        assert session.errors == [], session.errors


def charts_drawn(page) -> int:
    """How many charts Chart.js drew on the page (each canvas gets a chart and a non-zero size)."""
    page.wait_for_function("() => window.Chart !== undefined")
    return page.evaluate(
        "() => [...document.querySelectorAll('canvas[data-chart]')]"
        ".filter(c => window.Chart.getChart(c) && c.width > 0 && c.height > 0).length"
    )


def fits_phone(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_a_supplier_sees_a_rented_host_and_its_analytics(catalog, live_server, browser):
    supplier = UserFactory(email="host-owner@example.com", role="supplier")
    host = HostFactory(organization=OrganizationFactory(owner=supplier), name="l4-rack-1", **l4_host_data())
    buyer = UserFactory(email="renter@example.com")
    instance = instance_agent_report(instance=order(buyer).instances.get(), status="running")
    usage_paid(instance, 3600)

    page = browser.page
    log_in(page, live_server.url, "host-owner@example.com")
    page.goto(f"{live_server.url}{reverse('suppliers:dashboard')}")
    page.click("text=l4-rack-1")
    page.wait_for_url(f"**/supplier/hosts/{host.pk}/")
    assert charts_drawn(page) >= 1
    browser.shoot("supplier-host")

    page.click("header nav >> text='Analytics'")
    page.wait_for_url("**/supplier/analytics/**")
    assert charts_drawn(page) >= 2
    text = page.inner_text("main")
    assert "l4-rack-1" in text and "$0.34" in text  # the supplier's share of the hour at $0.40 (15% take)
    browser.shoot("supplier-analytics")

    phone = browser.new_page(PHONE)
    phone.context.add_cookies(page.context.cookies())
    phone.goto(page.url)
    assert charts_drawn(phone) >= 2 and fits_phone(phone)
    phone.screenshot(path=str(browser.folder / "supplier-analytics-phone.png"), full_page=True)


def test_a_new_buyer_pays_finds_an_offer_on_the_market_page_rents_reaches_it_and_sees_the_charge(
    catalog, live_server, browser, settings
):
    HostFactory(
        organization=OrganizationFactory(),
        name="l4-market",
        **l4_host_data(public_address="203.0.113.7", port_range_start=41000, port_range_end=41009),
    )
    demo = DemoStripeServer(webhook_url=live_server.url + reverse("billing:stripe_webhook"), webhook_secret="whsec_e2e")
    settings.STRIPE_API_BASE, settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET = (
        demo.url,
        "sk_test_e2e",
        "whsec_e2e",
    )
    page = browser.page
    with demo:
        page.goto(f"{live_server.url}/accounts/signup/")
        page.fill("#id_email", "newcomer@example.com")
        page.fill("#id_password1", "a-long-passphrase-9")
        page.fill("#id_password2", "a-long-passphrase-9")
        page.click("form button[type=submit]")
        page.wait_for_url("**/dashboard/")
        browser.shoot("buyer-dashboard-new")

        page.click("header nav >> text='Billing'")
        page.fill("#amount", "50")
        page.click("text=Pay with Stripe")
        page.wait_for_url(f"{demo.url}/**")
        assert "4242 4242 4242 4242" in page.input_value("#card")
        browser.shoot("demo-checkout")
        page.click("button:has-text('Pay')")
        page.wait_for_url(f"{live_server.url}/billing/**")
    buyer = User.objects.get(email="newcomer@example.com")
    assert wallet_balance(buyer) == Decimal("50")
    assert "$50.00" in page.inner_text("main")
    browser.shoot("buyer-billing")

    page.click("header nav >> text='Market'")
    page.select_option("#id_instance_type", "l4-24g.1x")
    page.select_option("#id_region", Region.objects.get(code="us-east").code)
    page.click("form.market-choice button[type=submit]")
    assert charts_drawn(page) >= 1
    browser.shoot("market-depth")
    page.click("table.market-levels >> text=Rent at this price")
    page.wait_for_url("**/offers/*/")
    page.wait_for_selector("#quote dl")
    page.fill("#id_image", "pytorch/pytorch:2.5.1")
    page.fill("#id_ports", "22")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Rent now')")
    page.wait_for_url("**/instances/")
    instance = Instance.objects.get(buyer=buyer)
    page.click(f"text=i-{instance.pk}")
    assert "ssh -p 41000 root@203.0.113.7" in page.inner_text("main")
    browser.shoot("instance-detail")

    usage_paid(instance_agent_report(instance=instance, status="running"), 1800)  # half an hour at $0.40
    page.click("header nav >> text='Dashboard'")
    page.wait_for_url("**/dashboard/")
    text = page.inner_text("main")
    assert "$49.80" in text and "$0.20" in text  # balance after the charge, and the charge
    assert charts_drawn(page) >= 1
    browser.shoot("buyer-dashboard")

    phone = browser.new_page(PHONE)
    phone.context.add_cookies(page.context.cookies())
    for path in (reverse("orders:dashboard"), reverse("market_depth")):
        phone.goto(live_server.url + path)
        assert fits_phone(phone), path
    phone.screenshot(path=str(browser.folder / "market-depth-phone.png"), full_page=True)


def test_staff_see_the_market_overview(catalog, live_server, browser):
    UserFactory(email="staff@example.com", is_staff=True)
    HostFactory(organization=OrganizationFactory(), name="l4-overview", **l4_host_data())
    instance = instance_agent_report(instance=order(UserFactory()).instances.get(), status="running")
    usage_paid(instance, 3600)

    page = browser.page
    log_in(page, live_server.url, "staff@example.com")
    page.goto(f"{live_server.url}{reverse('moderation')}")
    page.click("header nav >> text='Market overview'")
    page.wait_for_url("**/staff/market/**")
    text = page.inner_text("main")
    assert "l4-24g.1x" in text and "$0.40" in text and "$0.06" in text  # gross and take of the hour
    assert charts_drawn(page) >= 1
    browser.shoot("staff-market-overview")


# Words that are not English prose: units, acronyms, product and protocol names, the language
# switcher's own "English". Everything else in Latin letters on a Chinese page is data or a miss.
NOT_PROSE = {
    "English",
    "CNY",
    "USD",
    "RAM",
    "BF",  # BF16
    "NAME",  # the NAME=value syntax of environment variables
    "value",
    "GPU",
    "GPUs",
    "CPU",
    "vCPU",
    "vCPUs",
    "GB",
    "GiB",
    "MiB",
    "TB",
    "TFLOP",
    "TFLOPS",
    "kWh",
    "PUE",
    "API",
    "SSH",
    "ssh",
    "UTC",
    "ID",
    "IP",
    "HTTP",
    "HTTPS",
    "URL",
    "JSON",
    "CSV",
    "SLA",
    "Stripe",
    "Docker",
    "NVIDIA",
    "AMD",
    "Intel",
    "Gaudi",
    "Habana",
    "SXM",
    "PCIe",
    "HBM",
    "NVLink",
    "CUDA",
    "NPU",
    "DSA",
    "OpenAPI",
    "Mbps",
    "Gbps",
    "min",
    "max",
    "root",
    "h",
    "s",
    "x",
    "i",
    "Webhook",
    "Webhooks",
    "webhook",
    "CLI",
    "SDK",
    "DNS",
    "TLS",
    "OS",
    "Linux",
    "Ubuntu",
    "PyTorch",
    "JupyterLab",
    "Jupyter",
}


def page_words(page) -> set[str]:
    """Latin-script words in the visible text of the page and its titles and labels, outside code,
    inputs (placeholders are examples of what to type) and data marked translate=no."""
    text = page.evaluate(
        """() => {
          const skip = "code, pre, kbd, script, style, select, textarea, [translate=no]";
          const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
          const parts = [];
          while (walker.nextNode()) {
            const node = walker.currentNode;
            const parent = node.parentElement;
            if (!parent || parent.closest(skip) || !parent.checkVisibility()) continue;
            parts.push(node.textContent);
          }
          document.querySelectorAll("[title],[aria-label]").forEach(el => {
            for (const name of ["title", "aria-label"]) {
              if (el.getAttribute(name)) parts.push(el.getAttribute(name));
            }
          });
          return parts.join(" ");
        }"""
    )
    return set(re.findall(r"[A-Za-z][A-Za-z']+", text))


def data_words(*values: str) -> set[str]:
    return {word for value in values for word in re.findall(r"[A-Za-z][A-Za-z']+", value)}


def test_the_chinese_pages_of_the_main_flows_have_no_english_left(catalog, live_server, browser, settings):
    settings.LANGUAGE_CODE = "zh-hans"
    settings.PLATFORM_CURRENCY = "CNY"
    supplier = UserFactory(email="gongying@example.com", role="supplier", full_name="张三")
    organization = OrganizationFactory(owner=supplier, name="算力供应")
    host = HostFactory(
        organization=organization,
        name="l4-zh",
        **l4_host_data(public_address="203.0.113.9", port_range_start=42000, port_range_end=42009),
    )
    buyer = UserFactory(email="maijia@example.com", full_name="李四")
    instance = instance_agent_report(instance=order(buyer, ports=[22]).instances.get(), status="running")
    usage_paid(instance, 3600)
    UserFactory(email="guanli@example.com", is_staff=True, full_name="王五")
    known_data = data_words(
        *Region.objects.values_list("code", flat=True),
        *Region.objects.values_list("name", flat=True),
        *InstanceType.objects.values_list("name", flat=True),
        *AcceleratorModel.objects.values_list("name", flat=True),
        *AcceleratorModel.objects.values_list("slug", flat=True),
        host.name,
        "pytorch/pytorch example com",
        "Test credit",  # the factories' credit reason
    )
    pages = {
        "maijia@example.com": [
            reverse("orders:dashboard"),
            reverse("orders:instances"),
            reverse("orders:instance_detail", args=[instance.pk]),
            reverse("billing:buyer"),
            reverse("offers"),
            reverse("offer_detail", args=[Offer.objects.listed().first().pk]),
            reverse("market_depth"),
            reverse("instance_types"),
            reverse("accounts:notifications"),
        ],
        "gongying@example.com": [
            reverse("suppliers:dashboard"),
            reverse("suppliers:host_detail", args=[host.pk]),
            reverse("suppliers:analytics"),
            reverse("billing:earnings"),
        ],
        "guanli@example.com": [reverse("market_overview"), reverse("moderation")],
    }
    english: dict[str, list[str]] = {}
    for email, paths in pages.items():
        browser.page.context.clear_cookies()
        log_in(browser.page, live_server.url, email)
        for path in paths:
            browser.page.goto(live_server.url + path)
            left = sorted(page_words(browser.page) - NOT_PROSE - known_data)
            if left:
                english[path] = left
            browser.shoot("zh" + path.replace("/", "-").rstrip("-"))
    assert english == {}, "\n".join(f"{path}: {' '.join(words)}" for path, words in english.items())
