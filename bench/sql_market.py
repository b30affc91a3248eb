"""A large market generated in SQL (PostgreSQL), for the market-size benchmarks.

Placing thousands of hosts through the services takes minutes; this places a few dozen *template*
hosts through them (`host_create`, `host_approve`: real declarations, real offers), then copies
them in SQL: each copy is its template's row with its own name, organization and region, and its
template's offers with the copy's host, region and tier (the offer figures depend on the host's
hardware and price, which a copy keeps). The templates cover every GPU model, the accelerator
counts 1/2/4/8 and a spread of prices, so the copies are a varied market whose offers are exactly
what the services would list for them. Deterministic for a seed.
"""

from __future__ import annotations

import random
from decimal import Decimal

from throwaway import copy_columns

PRICE_LEVELS = (Decimal("0.8"), Decimal("1.0"), Decimal("1.25"), Decimal("1.6"))
HOSTS_PER_ORGANIZATION = 50


def _templates(seed: int) -> list:
    """One approved host per (GPU model, accelerator count, price level), through the services."""
    from marketplace.models import AcceleratorModel, Region
    from suppliers.hosts import host_approve, host_create
    from tests.factories import OrganizationFactory, host_data

    rng = random.Random(seed)
    organization = OrganizationFactory(name="bench-templates")
    owner = organization.memberships.get().user
    regions = list(Region.objects.all())
    hosts = []
    for model in AcceleratorModel.objects.exclude(kind="cpu").order_by("slug"):
        for count in (1, 2, 4, 8):
            for level in PRICE_LEVELS:
                price = (model.bf16_tflops * level / 300).quantize(Decimal("0.01")) or Decimal("0.05")
                host = host_create(
                    user=owner,
                    **host_data(
                        name=f"template-{model.slug}-{count}-{level}",
                        accelerator_model=model,
                        accelerator_count=count,
                        vcpus=model.vcpus_per_unit * count * 2,
                        ram_gb=model.ram_gb_per_unit * count * 2,
                        disk_gb=model.disk_gb_per_unit * count * 2,
                        region=rng.choice(regions),
                        zone=None,
                        price_per_unit_hour=price,
                    ),
                )
                hosts.append(host_approve(host=host))
    return hosts


def generate_sql_market(hosts: int, *, seed: int = 7) -> list:
    """A market of `hosts` hosts (at least the templates); returns the templates."""
    templates = _templates(seed)
    copy_templates(templates, max(0, hosts - len(templates)), seed=seed)
    return templates


def copy_templates(templates: list, copies: int, *, seed: int = 7) -> None:
    """Add `copies` hosts, spread evenly over the templates, with their offers; then ANALYZE."""
    from django.db import connection

    from marketplace.models import Offer
    from suppliers.models import Host, Organization

    rng = random.Random(seed + copies)
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(%s)", [rng.random()])
        cursor.execute("SELECT coalesce(max(id), 0) FROM suppliers_organization")
        (batch,) = cursor.fetchone()
        organization_count = max(1, copies // HOSTS_PER_ORGANIZATION)
        names, select = copy_columns(
            Organization,
            {"name": f"'bench-org-{batch}-' || g", "contact_email": "'bench-org-' || g || '@example.com'"},
            source="t",
        )
        cursor.execute(
            f'INSERT INTO "suppliers_organization" ({names}) SELECT {select} '
            f'FROM "suppliers_organization" t, generate_series(1, %s) AS g WHERE t.id = %s RETURNING id',
            [organization_count, templates[0].organization_id],
        )
        organizations = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT id FROM marketplace_region ORDER BY id")
        regions = [row[0] for row in cursor.fetchall()]
        per_template = [copies // len(templates)] * len(templates)
        for i in rng.sample(range(len(templates)), copies % len(templates)):
            per_template[i] += 1
        host_names, host_select = copy_columns(
            Host,
            {
                "name": f"'copy-{batch}-' || t.id || '-' || g",
                "organization_id": "(%s::bigint[])[1 + (g + t.id) %% %s]",
                "region_id": "(%s::bigint[])[1 + floor(random() * %s)::int]",
                "zone_id": "NULL",
            },
            source="t",
        )
        offer_names, offer_select = copy_columns(
            Offer,
            {"host_id": "c.id", "region_id": "c.region_id", "zone_id": "NULL", "tier": "r.tier"},
            source="t",
        )
        for template, count in zip(templates, per_template, strict=True):
            if not count:
                continue
            cursor.execute(
                f'WITH c AS (INSERT INTO "suppliers_host" ({host_names}) SELECT {host_select} '
                f'FROM "suppliers_host" t, generate_series(1, %s) AS g WHERE t.id = %s RETURNING id, region_id) '
                f'INSERT INTO "marketplace_offer" ({offer_names}) SELECT {offer_select} '
                f'FROM "marketplace_offer" t, c JOIN "marketplace_region" r ON r.id = c.region_id '
                f"WHERE t.host_id = %s",
                [organizations, len(organizations), regions, len(regions), count, template.pk, template.pk],
            )
        cursor.execute("ANALYZE")  # planner statistics: autovacuum may be off or behind
