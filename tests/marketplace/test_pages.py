"""Browser pages of the catalog: offer search, offer detail, instance types."""

from decimal import Decimal

import pytest
from django.urls import reverse

from marketplace.api import pagination
from marketplace.models import AcceleratorModel, Offer
from tests.factories import HostFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_hosts(supplier_org, other_supplier_org):
    h100 = HostFactory(organization=supplier_org, name="h100")
    l4 = HostFactory(
        organization=other_supplier_org,
        name="l4",
        accelerator_model=AcceleratorModel.objects.get(slug="l4-24g"),
        accelerator_count=2,
        vcpus=32,
        ram_gb=192,
        disk_gb=1000,
        price_per_unit_hour=Decimal("0.40"),
    )
    return h100, l4


def test_offer_table_lists_filters_and_sorts(client, two_hosts):
    response = client.get(reverse("offers"))
    assert response.status_code == 200
    assert response.context["page"].paginator.count == Offer.objects.listed().count()

    filtered = client.get(reverse("offers"), {"accelerator_model": "l4-24g", "ordering": "-price_per_hour"})
    rows = list(filtered.context["page"])
    assert rows and all(o.accelerator_model.slug == "l4-24g" for o in rows)
    assert [o.price_per_hour for o in rows] == sorted((o.price_per_hour for o in rows), reverse=True)
    assert "l4-24g.2x" in filtered.content.decode()


def test_invalid_filter_shows_an_error_and_no_rows(client, two_hosts):
    response = client.get(reverse("offers"), {"max_price_per_hour": "cheap"})
    assert response.status_code == 200
    assert response.context["page"].paginator.count == 0
    assert "Enter a number" in response.content.decode()


def test_offer_pages_paginate(client, two_hosts, supplier_org):
    for i in range(3):
        HostFactory(organization=supplier_org, name=f"more-{i}")
    assert Offer.objects.listed().count() > 25
    response = client.get(reverse("offers"), {"page": 2})
    assert response.context["page"].number == 2
    assert "Page 2 of" in response.content.decode()


def test_offer_detail_and_unlisted_offer_404(client, two_hosts):
    offer = Offer.objects.listed().first()
    assert client.get(reverse("offer_detail", args=[offer.id])).status_code == 200
    assert client.get(reverse("offer_detail", args=[999999])).status_code == 404


def test_instance_type_pages(client, two_hosts):
    listing = client.get(reverse("instance_types"), {"accelerator_kind": "gpu"})
    assert listing.status_code == 200
    detail = client.get(reverse("instance_type_detail", args=["h100-80g.8x"]))
    assert detail.status_code == 200
    assert next(iter(detail.context["page"])).host == two_hosts[0]
    assert client.get(reverse("instance_type_detail", args=["no.such"])).status_code == 404


def test_the_offer_page_counts_a_big_search_up_to_its_limit(client, two_hosts, monkeypatch):
    listed = Offer.objects.listed().filter(verified=True).count()
    page = client.get(reverse("offers")).content.decode()
    assert f"{listed} results" in page or f"{listed} result" in page
    monkeypatch.setattr(pagination, "SEARCH_COUNT_LIMIT", 3)
    page = client.get(reverse("offers")).content.decode()
    assert "3+ result" in page
