"""Order reads: orders and instances scoped to their owner, renters of a host, a buyer's balance."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NamedTuple

from django.db.models import Count, Prefetch, QuerySet
from django.http import Http404

from accounts.models import User
from billing import rating
from billing.models import UsageRecord
from billing.selectors import wallet_balance
from marketplace.currency import platform_currency
from marketplace.models import InstanceType, Offer

from .models import AgentUsageReport, Instance, InstancePort, Order, Pricing


def order_list_for_user(*, user: User) -> QuerySet[Order]:
    queryset = Order.objects.select_related("instance_type", "region", "placed_by")
    return queryset if user.is_staff else queryset.filter(buyer=user)


def instance_list_for_user(*, user: User) -> QuerySet[Instance]:
    queryset = Instance.objects.select_related(
        "instance_type",
        "instance_type__accelerator_model",
        "host",
        "host__region",
        "host__organization",
        "order",
        "order__placed_by",
    ).prefetch_related(Prefetch("ports", queryset=InstancePort.objects.active()))
    return queryset if user.is_staff else queryset.filter(buyer=user)


def instance_get_for_user(*, user: User, instance_id: int | str) -> Instance:
    """The instance if the user owns it (or is staff), else 404: others' instances do not exist."""
    try:
        return instance_list_for_user(user=user).get(pk=int(instance_id))
    except (Instance.DoesNotExist, ValueError, TypeError):
        raise Http404("No such instance.") from None


def order_get_for_user(*, user: User, order_id: int | str) -> Order:
    try:
        return order_list_for_user(user=user).get(pk=int(order_id))
    except (Order.DoesNotExist, ValueError, TypeError):
        raise Http404("No such order.") from None


def offers_elsewhere(*, instance_type: InstanceType, exclude_host_id: int) -> dict[str, object]:
    """How to get this instance type elsewhere right now (for a `capacity_taken` answer)."""
    offers = Offer.objects.listed().filter(instance_type=instance_type).exclude(host_id=exclude_host_id)
    cheapest = offers.order_by("price_per_hour").first()
    return {
        "instance_type": instance_type.name,
        "offers_elsewhere": offers.count(),
        "instances_available_elsewhere": sum(offers.values_list("available_count", flat=True)),
        "cheapest_price_per_hour": str(cheapest.price_per_hour) if cheapest else None,
        "cheapest_offer_id": cheapest.pk if cheapest else None,
    }


def renters(**instance_filters: object) -> QuerySet[User]:
    """Buyers with a not-terminated instance matching the filters (e.g. host=..., host__organization=...)."""
    instances = Instance.objects.not_terminated().filter(**instance_filters)
    return User.objects.filter(pk__in=instances.values("buyer_id"))


def buyer_burn_per_hour(*, user: User) -> Decimal:
    """What the buyer's live on-demand and spot instances cost per hour (reserved terms are prepaid)."""
    return buyer_live_rates(user=user).burn


class LiveRates(NamedTuple):
    total: Decimal  # every live instance, per hour (what the spend ceiling counts)
    burn: Decimal  # the live on-demand and spot instances (reserved terms are prepaid)


def buyer_live_rates(*, user: User) -> LiveRates:
    """The buyer's live instances per hour, all of them and without reserved ones: one query."""
    total = burn = Decimal(0)
    for price, pricing in Instance.objects.live().filter(buyer=user).values_list("price_per_hour", "pricing"):
        total += price
        if pricing != Pricing.RESERVED:
            burn += price
    return LiveRates(total, burn)


def buyer_balance(*, user: User) -> dict[str, Any]:
    """Balance, burn rate ($/h of live on-demand/spot instances) and runway in hours."""
    balance = wallet_balance(user)
    burn = buyer_burn_per_hour(user=user)
    runway = (balance / burn).quantize(Decimal("0.01")) if burn > 0 else None
    return {"balance": balance, "currency": platform_currency().code, "burn_per_hour": burn, "runway_hours": runway}


def instance_cost_so_far(*, instance: Instance) -> Decimal:
    """What the instance's usage records charge (see `instance_costs_so_far`)."""
    return instance_costs_so_far(instance_ids=[instance.pk]).get(instance.pk, Decimal(0))


def instance_costs_so_far(*, instance_ids: list[int]) -> dict[int, Decimal]:
    """What each instance's usage records charge, each rounded as settlement rounds it; instances
    without usage are left out. One query grouped by (instance, seconds, rate): a long rental's
    thousands of one-minute records are a handful of groups."""
    groups = (
        UsageRecord.objects.filter(instance_id__in=instance_ids)
        .order_by()
        .values("instance_id", "seconds", "rate_per_hour")
        .annotate(n=Count("pk"))
        .values_list("instance_id", "seconds", "rate_per_hour", "n")
    )
    costs: dict[int, Decimal] = {}
    for instance_id, seconds, rate, n in groups:
        costs[instance_id] = costs.get(instance_id, Decimal(0)) + rating.charge_for(seconds, rate) * n
    return costs


def instance_utilization(*, instance: Instance) -> dict[str, Any]:
    """The last hour of accelerator readings its agent sent (one a minute), its uptime as the agent
    counts it, and its cost so far."""
    report = AgentUsageReport.objects.filter(instance=instance).first()
    samples = report.utilization if report else []
    uptime = (report.counters or {}).get("uptime_seconds") if report else None
    return {
        "samples": [{"at": int(at), "utilization_percent": util, "memory_used_mib": mem} for at, util, mem in samples],
        "uptime_seconds": uptime,
        "cost_so_far": instance_cost_so_far(instance=instance),
        "reported_at": report.reported_at if report else None,
    }
