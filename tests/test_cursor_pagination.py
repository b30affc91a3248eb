"""Lists that grow without bound page by cursor: newest first, every row once however rows are
added meanwhile, the same queries for a page deep in a long list as for the first of a short one,
and malformed paging is a 400 naming the parameter."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import TopUp
from tests.conftest import bearer_client
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def top_ups(user, n: int) -> list[int]:
    TopUp.objects.bulk_create(TopUp(user=user, amount=Decimal("10.00")) for _ in range(n))
    return list(TopUp.objects.filter(user=user).order_by("-id").values_list("id", flat=True))


def walk(client, url: str) -> tuple[list[int], int]:
    seen, pages = [], 0
    while url:
        body = client.get(url).json()
        assert "count" not in body  # no count: a page costs the same however long the list
        seen += [row["id"] for row in body["results"]]
        url, pages = body["next"], pages + 1
    return seen, pages


def test_following_next_sees_every_row_once_newest_first_even_as_rows_arrive():
    user = UserFactory()
    ids = top_ups(user, 23)
    client = bearer_client(user)
    first = client.get("/api/v1/billing/top-ups/?page_size=10").json()
    assert [row["id"] for row in first["results"]] == ids[:10] and first["previous"] is None
    top_ups(user, 5)  # newer rows arrive while the client pages: they do not shift older pages
    rest, pages = walk(client, first["next"])
    assert [*[row["id"] for row in first["results"]], *rest] == ids and pages == 2
    back = client.get(client.get(first["next"]).json()["previous"]).json()
    assert [row["id"] for row in back["results"]][-1] == ids[9]  # previous leads back up the list


def test_a_deep_page_of_a_long_list_costs_the_same_queries_as_the_first_of_a_short_one():
    short, long = UserFactory(), UserFactory()
    top_ups(short, 3)
    top_ups(long, 260)
    short_client, long_client = bearer_client(short), bearer_client(long)
    short_client.get("/api/v1/billing/top-ups/")
    url = "/api/v1/billing/top-ups/?page_size=50"
    for _ in range(4):  # four pages down
        url = long_client.get(url).json()["next"]
    with CaptureQueriesContext(connection) as first_of_short:
        short_client.get("/api/v1/billing/top-ups/?page_size=50")
    with CaptureQueriesContext(connection) as deep_of_long:
        assert len(long_client.get(url).json()["results"]) == 50
    assert len(deep_of_long) == len(first_of_short)
    assert not any("COUNT(" in q["sql"].upper() or "OFFSET" in q["sql"].upper() for q in deep_of_long.captured_queries)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page=2", "page"),
        ("cursor=bm9wZQ", "cursor"),
        ("cursor=%%%", "cursor"),
        ("cursor=cD1hYmM%3D", "cursor"),  # base64 of p=abc: a position that is not an id
        ("page_size=0", "page_size"),
    ],
)
def test_malformed_paging_is_a_400_naming_the_parameter(query, field):
    client = bearer_client(UserFactory())
    for path in ("/api/v1/instances/", "/api/v1/orders/", "/api/v1/billing/usage/", "/api/v1/billing/ledger/"):
        response = client.get(f"{path}?{query}")
        assert response.status_code == 400, (path, response.content)
        assert field in response.json()["fields"]
