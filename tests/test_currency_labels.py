"""Form labels, help texts and page headings name the deployment's currency (CURRENCY), never a
hard-coded dollar."""

import pytest
from django.urls import reverse

from marketplace.forms import AvailabilityAlertForm
from orders.forms import RentForm, ReportResolveForm, SpendLimitForm
from suppliers.forms import HostForm


@pytest.fixture
def yuan(settings):
    settings.PLATFORM_CURRENCY = "CNY"


def test_form_labels_and_help_texts_name_the_platform_currency(db, yuan):
    labels = [
        str(AvailabilityAlertForm().fields["max_price_per_hour"].label),
        str(RentForm(user=None).fields["max_price_per_hour"].label),
        str(SpendLimitForm().fields["spend_limit_per_hour"].label),
    ]
    assert labels == ["Max. ¥ per hour", "Bid / ceiling (¥ per instance-hour)", "Limit (¥/hour)"]
    credit = str(ReportResolveForm().fields["credit"].label)
    assert "CNY" in credit and "USD" not in credit
    help_text = str(HostForm().fields["no_accelerator_price_per_vcpu_hour"].help_text)
    assert help_text.endswith("Empty: ¥0.01.") and "$" not in help_text


def test_the_dollar_stays_the_default(db):
    assert str(SpendLimitForm().fields["spend_limit_per_hour"].label) == "Limit ($/hour)"


def test_pages_show_the_platform_currency_in_headings_and_labels(client, buyer, supplier, approved_host, yuan):
    client.force_login(buyer)
    instances = client.get(reverse("orders:instances")).content.decode()
    assert "Limit (¥/hour)" in instances and "¥/hour" in instances and "$" not in instances
    offers = client.get(reverse("offers")).content.decode()
    assert "per instance-hour in CNY" in offers and "in USD" not in offers
    client.force_login(supplier)
    hosts = client.get(reverse("suppliers:dashboard")).content.decode()
    assert "¥/unit-h" in hosts and "$" not in hosts
    host = client.get(reverse("suppliers:host_detail", args=[approved_host.pk])).content.decode()
    assert "per accelerator-hour" in host and "$" not in host
