"""The market of bench/concurrent_orders.py: generated hosts and offers plus one hot host, a buyer
with an API key per client, and the final check that no host is oversold. Django must be set up
first (the functions import models when called)."""

from __future__ import annotations

import os
from decimal import Decimal

from raw_orders import Buyer, InstanceTypeInfo, Market

HOT_TYPE = "cpu.2x"


def describe_market(hosts: int) -> str:
    from django.db import connection

    from marketplace.models import Offer

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (version,) = cursor.fetchone()
    offers = Offer.objects.count()
    listed = Offer.objects.filter(available_count__gt=0).count()
    return (
        f"PostgreSQL {version}, {os.cpu_count()} CPUs: {hosts} hosts (+1 hot host), {offers} offers ({listed} listed)"
    )


def build_market(hosts: int, buyers: int) -> Market:
    from django.db import connection
    from django.db.models import Sum

    from accounts.models import User
    from accounts.services import api_key_issue
    from bench.market import generate
    from marketplace.models import AcceleratorModel, InstanceType, Offer
    from marketplace.services import catalog_sync
    from tests.factories import HostFactory, OrganizationFactory, UserFactory

    catalog_sync()
    generate(hosts)
    hot = HostFactory(
        organization=OrganizationFactory(name="Bench Hot Host Compute"),
        name="bench-hot",
        accelerator_model=AcceleratorModel.objects.get(slug="epyc-9654"),
        accelerator_count=22,  # sockets: 22 x 192 threads >= 4,096 vCPUs
        vcpus=4096,
        ram_gb=4096 * 4,
        disk_gb=4096 * 20,
        price_per_unit_hour=Decimal("0.01"),
    )
    people = [UserFactory(email=f"bench-orders-{i}@example.com", credit=10**9) for i in range(buyers)]
    User.objects.filter(pk__in=[p.pk for p in people]).update(spend_limit_per_hour=Decimal("999999999"))
    keys = [Buyer(p.pk, api_key_issue(user=p, name="bench").key) for p in people]
    with connection.cursor() as cursor:  # the counts the raw baseline refills sold-out offers to
        cursor.execute("CREATE TABLE bench_listed AS SELECT id AS offer_id, available_count FROM marketplace_offer")
        cursor.execute("ALTER TABLE bench_listed ADD PRIMARY KEY (offer_id)")
        cursor.execute("ANALYZE")  # planner statistics: autovacuum may be off or behind

    def info(instance_type: InstanceType, listed: int) -> InstanceTypeInfo:
        return InstanceTypeInfo(
            instance_type.pk,
            instance_type.name,
            instance_type.accelerator_count,
            instance_type.vcpus,
            instance_type.ram_gb,
            instance_type.disk_gb,
            listed,
        )

    listed = (
        Offer.objects.filter(available_count__gt=0, verified=True)
        .exclude(host=hot)
        .values("instance_type")
        .annotate(left=Sum("available_count"))
        .order_by("-left", "instance_type__name")
    )
    types = {t.pk: t for t in InstanceType.objects.all()}
    hot_offer = Offer.objects.get(host=hot, instance_type__name=HOT_TYPE)
    return Market(
        buyers=keys,
        types=[info(types[row["instance_type"]], row["left"]) for row in listed],
        hot_host_id=hot.pk,
        hot_offer_id=hot_offer.pk,
        hot_type=info(hot_offer.instance_type, hot_offer.available_count),
    )


def capacity_check() -> tuple[list[str], list[str]]:
    """(oversold hosts, hosts whose offers differ from what they can carry), as tests/test_invariants.py
    checks them: active allocations fit the host's effective capacity on every dimension."""
    from marketplace import capacity
    from marketplace.models import Offer
    from suppliers.models import Host
    from suppliers.offers import host_allocated_claims, host_capacity_spec, host_carriable_types, host_is_sellable

    oversold: list[str] = []
    stale: list[str] = []
    for host in Host.objects.select_related("accelerator_model", "organization", "region", "zone"):
        allocated = capacity.total(host_allocated_claims(host))
        limit = capacity.effective_capacity(host_capacity_spec(host))
        over = [f"{dim} {used} > {limit[dim]}" for dim, used in allocated.amounts.items() if used > limit[dim]]
        if over:
            oversold.append(f"{host.name}: {', '.join(over)}")
        offers = {o.instance_type_id: o.available_count for o in Offer.objects.filter(host=host)}
        if host_is_sellable(host):
            wrong = any(offers.get(t.pk, count) != count for t, count in host_carriable_types(host).items())
        else:
            wrong = any(offers.values())
        if wrong:
            stale.append(host.name)
    return oversold, stale
