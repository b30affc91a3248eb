"""GET /api/v1/offers/ and /api/v1/instance-types/: every filter, ordering, strictness."""

import importlib
from datetime import timedelta
from decimal import Decimal

import pytest
from django.apps import apps as django_apps
from django.contrib import admin as django_admin
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from marketplace.admin import AcceleratorModelAdmin, InstanceTypeAdmin
from marketplace.api import pagination
from marketplace.api.serializers import OfferSerializer
from marketplace.models import AcceleratorModel, InstanceType, Offer, Region
from marketplace.selectors import offers_with_terms
from marketplace.services import offer_catalog_figures_copy
from suppliers.hosts import host_set_reliability
from suppliers.models import MaintenanceWindow
from suppliers.offers import offers_refresh_for_host
from tests.factories import HostFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def market(supplier_org, other_supplier_org):
    """Three hosts: an H100 box in us-east, a Gaudi 2 box in eu-north, an L4 edge box (unverified)."""
    h100 = HostFactory(organization=supplier_org, name="h100")
    gaudi = HostFactory(
        organization=other_supplier_org,
        name="gaudi",
        accelerator_model=AcceleratorModel.objects.get(slug="gaudi2-96g"),
        region=Region.objects.get(code="eu-north"),
        zone=None,
        price_per_unit_hour=Decimal("0.95"),
        pue=Decimal("1.10"),
    )
    l4 = HostFactory(
        organization=other_supplier_org,
        name="l4",
        accelerator_model=AcceleratorModel.objects.get(slug="l4-24g"),
        accelerator_count=2,
        vcpus=32,
        ram_gb=192,
        disk_gb=1000,
        region=Region.objects.get(code="edge-lon"),
        zone=None,
        price_per_unit_hour=Decimal("0.40"),
        verified=False,
    )
    host_set_reliability(host=h100, reliability=Decimal("0.9990"))
    host_set_reliability(host=gaudi, reliability=Decimal("0.9500"))
    return {"h100": h100, "gaudi": gaudi, "l4": l4}


def results(client, query=""):
    if "verified=" not in query:
        query = f"{query}&verified=all"
    response = client.get(f"/api/v1/offers/?page_size=200&{query}")
    assert response.status_code == 200, response.content
    return response.json()["results"]


@pytest.mark.parametrize(
    ("query", "expected_hosts"),
    [
        ("accelerator_model=h100-80g", {"h100"}),
        ("accelerator_kind=dsa", {"gaudi"}),
        ("accelerator_kind=gpu", {"h100", "l4"}),
        ("min_accelerators=4", {"h100", "gaudi"}),
        ("min_accelerator_memory_gb=90", {"gaudi"}),
        ("min_vcpus=100", {"h100", "gaudi"}),
        ("min_ram_gb=1024", {"h100", "gaudi"}),
        ("region=eu-north", {"gaudi"}),
        ("tier=edge", {"l4"}),
        ("max_price_per_hour=0.5", {"l4"}),
        ("verified=false", {"l4"}),
        ("verified=true", {"h100", "gaudi"}),
        ("verified=all", {"h100", "gaudi", "l4"}),
        ("min_reliability=0.99", {"h100"}),
        ("instance_type=gaudi2-96g.8x", {"gaudi"}),
    ],
)
def test_each_filter(api_client, market, query, expected_hosts):
    names = {
        market_name for market_name, host in market.items() for r in results(api_client, query) if r["host"] == host.id
    }
    assert names == expected_hosts


def test_filters_combine(api_client, market):
    rows = results(api_client, "accelerator_kind=gpu&min_accelerators=2&max_price_per_hour=10")
    assert rows and all(
        r["accelerator_kind"] == "gpu" and r["accelerator_count"] >= 2 and Decimal(r["price_per_hour"]) <= 10
        for r in rows
    )


@pytest.mark.parametrize("field", ["price_per_hour", "price_per_tflop_hour", "energy_kwh_per_hour", "reliability"])
def test_ordering_both_ways(api_client, market, field):
    def key(row):
        return Decimal(row[field]) if row[field] is not None else None

    ascending = [key(r) for r in results(api_client, f"ordering={field}")]
    descending = [key(r) for r in results(api_client, f"ordering=-{field}")]
    present_asc = [v for v in ascending if v is not None]
    present_desc = [v for v in descending if v is not None]
    assert present_asc == sorted(present_asc)
    assert present_desc == sorted(present_desc, reverse=True)
    # Missing values sort last both ways.
    if None in ascending:
        assert ascending[-1] is None and descending[-1] is None


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ("gpu=h100", "unknown_parameter", "gpu"),
        ("accelerator_model=h900", "invalid_filter", "accelerator_model"),
        ("accelerator_kind=tpu", "invalid_filter", "accelerator_kind"),
        ("min_accelerators=two", "invalid_filter", "min_accelerators"),
        ("min_accelerators=1.5", "invalid_filter", "min_accelerators"),
        ("min_vcpus=-1", "invalid_filter", "min_vcpus"),
        ("region=atlantis", "invalid_filter", "region"),
        ("tier=space", "invalid_filter", "tier"),
        ("max_price_per_hour=cheap", "invalid_filter", "max_price_per_hour"),
        ("verified=maybe", "invalid_filter", "verified"),
        ("min_reliability=2", "invalid_filter", "min_reliability"),
        ("ordering=name", "invalid_filter", "ordering"),
        ("page=0", "invalid", "page"),
        ("page_size=100000", "invalid", "page_size"),
    ],
)
def test_bad_parameters_are_400_naming_them(api_client, market, query, code, field):
    response = api_client.get(f"/api/v1/offers/?{query}")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code
    assert field in body["fields"]
    assert field in body["detail"]


def test_offer_rows_carry_the_comparison_figures(api_client, market):
    row = next(r for r in results(api_client, "instance_type=h100-80g.1x"))
    assert row["price_per_hour"] == "2.500000"
    assert row["energy_kwh_per_hour"] == "0.8750"
    assert row["tflops"] == "989.00"
    assert row["region"] == "us-east" and row["tier"] == "cloud"
    assert row["available_count"] == 8
    assert row["verified"] is True


def test_list_query_count_does_not_grow_with_page_size(api_client, market):
    with CaptureQueriesContext(connection) as small:
        api_client.get("/api/v1/offers/?page_size=2")
    with CaptureQueriesContext(connection) as large:
        api_client.get("/api/v1/offers/?page_size=200")
    assert len(small) == len(large)


def test_instance_types_endpoint(api_client):
    response = api_client.get("/api/v1/instance-types/h100-80g.8x/")
    assert response.status_code == 200
    assert response.json()["accelerator_memory_gb"] == 640
    cpu = api_client.get("/api/v1/instance-types/?accelerator_kind=cpu&page_size=200").json()["results"]
    assert cpu and all(t["accelerator_count"] == 0 for t in cpu)
    assert api_client.get("/api/v1/instance-types/?accelerator_kind=quantum").status_code == 400
    assert api_client.get("/api/v1/instance-types/nope.1x/").json()["code"] == "not_found"


def test_schema_and_docs_are_served(api_client):
    assert api_client.get("/api/schema/").status_code == 200
    assert api_client.get("/api/docs/").status_code == 200


def test_unknown_api_url_is_a_json_404(api_client):
    response = api_client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_wrong_method_is_a_405_in_the_error_shape(supplier_client):
    response = supplier_client.post("/api/v1/offers/", {}, format="json")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_openapi_schema_is_valid_without_warnings(tmp_path):

    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in ("/api/v1/orders/", "/api/v1/quotes/", "/api/v1/instances/{id}/stop/", "/api/v1/hosts/"):
        assert path in text


def test_search_defaults_to_verified_hosts(api_client, market):
    rows = api_client.get("/api/v1/offers/?page_size=200").json()["results"]
    assert rows and all(r["verified"] for r in rows)
    assert market["l4"].pk not in {r["host"] for r in rows}


def test_list_rows_are_exactly_what_the_offer_serializer_shows(api_client, market):
    """The list reads plain values for speed; each row must equal the serializer's output."""
    now = timezone.now()
    MaintenanceWindow.objects.create(
        host=market["gaudi"], starts_at=now + timedelta(days=3), ends_at=now + timedelta(days=3, hours=2), reason="Fans"
    )
    offers_refresh_for_host(host=market["gaudi"])
    rows = results(api_client, "ordering=-price_per_tflop_hour")
    assert len(rows) == Offer.objects.listed().count() > 10
    expected = offers_with_terms(Offer.objects.listed().with_related())
    for row in rows:
        assert row == OfferSerializer(expected.get(pk=row["id"])).data
    assert any(row["available_until"] for row in rows) and any(row["zone"] is None for row in rows)
    assert any(row["reliability"] is None for row in rows) and any(row["reliability"] for row in rows)


def test_the_search_count_stops_at_its_limit_and_says_so(api_client, market, monkeypatch):
    everything = api_client.get("/api/v1/offers/?verified=all").json()
    assert everything["count"] > 3 and everything["count_capped"] is False
    monkeypatch.setattr(pagination, "SEARCH_COUNT_LIMIT", 3)
    capped = api_client.get("/api/v1/offers/?verified=all&page_size=2").json()
    assert capped["count"] == 3 and capped["count_capped"] is True
    assert len(capped["results"]) == 2 and capped["next"]
    monkeypatch.setattr(pagination, "SEARCH_COUNT_LIMIT", everything["count"])
    exact = api_client.get("/api/v1/offers/?verified=all").json()
    assert exact["count"] == everything["count"] and exact["count_capped"] is False


def test_offers_carry_their_search_figures_and_the_migration_copies_them(market):
    figures = ("accelerator_kind", "accelerator_count", "accelerator_memory_gb", "vcpus", "ram_gb")

    def expected(offer):
        t, m = offer.instance_type, offer.accelerator_model
        return (m.kind, t.accelerator_count, m.memory_gb, t.vcpus, t.ram_gb)

    offers = list(Offer.objects.select_related("instance_type", "accelerator_model"))
    assert offers and all(tuple(getattr(o, f) for f in figures) == expected(o) for o in offers)
    Offer.objects.update(accelerator_kind="", accelerator_count=0, accelerator_memory_gb=0, vcpus=0, ram_gb=0)
    figures_copy = importlib.import_module("marketplace.migrations.0008_offer_search_figures").figures_copy
    figures_copy(django_apps, None)
    for offer in offers:
        offer.refresh_from_db()
    assert all(tuple(getattr(o, f) for f in figures) == expected(o) for o in offers)


def test_a_staff_edit_of_the_catalog_reaches_the_offers_search_figures(api_client, market, rf):
    offer = Offer.objects.select_related("instance_type", "accelerator_model").filter(verified=True).first()
    instance_type, model = offer.instance_type, offer.accelerator_model
    instance_type.vcpus += 1000
    InstanceTypeAdmin(InstanceType, django_admin.site).save_model(rf.post("/"), instance_type, None, True)
    model.memory_gb += 1000
    AcceleratorModelAdmin(AcceleratorModel, django_admin.site).save_model(rf.post("/"), model, None, True)
    offer.refresh_from_db()
    assert offer.vcpus == instance_type.vcpus and offer.accelerator_memory_gb == model.memory_gb
    found = api_client.get(f"/api/v1/offers/?min_vcpus={instance_type.vcpus}&verified=all").json()["results"]
    assert {row["id"] for row in found} == set(
        Offer.objects.listed().filter(instance_type=instance_type).values_list("pk", flat=True)
    )
    assert offer_catalog_figures_copy() == 0  # nothing named: nothing written


def test_lists_of_models_and_regions_and_an_upper_bound_on_accelerators(api_client, market):
    both = results(api_client, "accelerator_model__in=h100-80g,gaudi2-96g&verified=all")
    assert {o["accelerator_model"] for o in both} == {"h100-80g", "gaudi2-96g"}
    regions = results(api_client, "region__in=eu-north,edge-lon&verified=all")
    assert {o["region"] for o in regions} == {"eu-north", "edge-lon"}
    small = results(api_client, "max_accelerators=2&verified=all")
    assert small and all(o["accelerator_count"] <= 2 for o in small)
    assert any(o["accelerator_count"] > 2 for o in results(api_client, "verified=all"))
    unknown = api_client.get("/api/v1/offers/?accelerator_model__in=h100-80g,nope-1g")
    assert unknown.status_code == 400 and unknown.json()["code"] == "invalid_filter"
    assert "nope-1g" in unknown.json()["fields"]["accelerator_model__in"][0]
