"""Benchmark: offer search at 10,000 and at 1,000,000 offers (PostgreSQL).

    DATABASE_URL=postgres://... .venv/bin/python bench/offer_search_scale.py [--offers 10000,1000000] [--repeat 40]

A throwaway database; the market is generated in SQL (`sql_market.py`: hosts copied from templates
placed by the services, with their offers), grown from the smallest size to the next in place.
At each size, `GET /api/v1/offers/` with a few typical filter and ordering combinations (50 rows a
page, as the API serves them: count, page, serialization) beside the same page read by plain SQL.
Prints median and p95 per search and size, and each search's p95 against its p95 at the smallest
size (the target: within 1.5x at 1M offers).
"""

from __future__ import annotations

import argparse
import statistics
import time

from throwaway import throwaway_database  # also puts the project on the path and picks the test settings

SEARCHES = {
    "cheapest first (no filter)": "ordering=price_per_hour",
    "gpu, >=2 accelerators, by $/TFLOP-hour": "accelerator_kind=gpu&min_accelerators=2&ordering=price_per_tflop_hour",
    "one model in one region, by price": "accelerator_model=h100-80g&region=eu-central&ordering=price_per_hour",
    "under $2/h, >=80 GB per accelerator": "max_price_per_hour=2&min_accelerator_memory_gb=80&ordering=price_per_hour",
    "most reliable first": "ordering=-reliability",
}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, int(len(ordered) * q) - 1)]


def measure(client, repeat: int) -> dict[str, tuple[float, float]]:
    figures = {}
    for label, query in SEARCHES.items():
        url = f"/api/v1/offers/?{query}&page_size=50"
        response = client.get(url)
        assert response.status_code == 200, response.content[:300]
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            client.get(url).json()
            samples.append((time.perf_counter() - start) * 1000)
        figures[label] = (statistics.median(samples), percentile(samples, 0.95))
        print(f"  {label:<44} median {figures[label][0]:8.2f} ms   p95 {figures[label][1]:8.2f} ms", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--offers", default="10000,1000000", help="sizes, in offers, smallest first")
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.offers.split(","))

    with throwaway_database() as connection:
        if connection.vendor != "postgresql":
            raise SystemExit("PostgreSQL only: set DATABASE_URL")
        from rest_framework.test import APIClient
        from sql_market import _templates, copy_templates

        from marketplace.models import Offer
        from suppliers.models import Host
        from tests.factories import UserFactory

        templates = _templates(seed=7)
        per_host = Offer.objects.count() / Host.objects.count()
        client = APIClient()
        client.force_authenticate(UserFactory(email="bench-buyer@example.com"))
        results: dict[int, dict[str, tuple[float, float]]] = {}
        for size in sizes:
            started = time.perf_counter()
            missing = int((size - Offer.objects.count()) / per_host)
            if missing > 0:
                copy_templates(templates, missing, seed=size)
            offers, hosts = Offer.objects.count(), Host.objects.count()
            print(f"{offers:,} offers on {hosts:,} hosts (generated in {time.perf_counter() - started:.1f} s)")
            results[size] = measure(client, args.repeat)
        smallest = sizes[0]
        for size in sizes[1:]:
            print(f"p95 at {size:,} against {smallest:,} offers (target: at most 1.5x)")
            for label in SEARCHES:
                ratio = results[size][label][1] / results[smallest][label][1]
                print(f"  {label:<44} {ratio:6.2f} x")


if __name__ == "__main__":
    main()
