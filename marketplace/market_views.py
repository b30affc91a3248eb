"""Market pages: the public market depth (order book) and the staff market overview."""

from __future__ import annotations

from django.shortcuts import render
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from accounts.scopes import Scope, page_scope
from marketplace.currency import platform_currency
from orders import market_depth
from orders.models import Pricing

from .charts import Series, chart_spec, money_value
from .errors import NotFound
from .forms import MarketDepthForm
from .views import staff_page


@page_scope(None)
def market_depth_page(request):
    """Anyone: the order book of an instance type in a region, with every type x region's cheapest
    price. A choice outside the catalog is a 400 with the form's errors."""
    choices = {
        "instance_types": market_depth.market_instance_type_names(),
        "regions": market_depth.market_region_codes(),
    }
    form = MarketDepthForm(request.GET or None, **choices)
    summary = market_depth.market_summary()
    context = {"form": form, "summary": summary, "depth": None}
    if form.is_bound and not form.is_valid():
        return render(request, "marketplace/market_depth.html", context, status=400)
    chosen = form.cleaned_data if form.is_bound else {}
    selection = market_depth.market_default_selection(
        summary, instance_type=chosen.get("instance_type") or None, region=chosen.get("region") or None
    )
    if selection is not None:
        try:
            instance_type, region = market_depth.market_depth_target(instance_type=selection[0], region=selection[1])
        except NotFound:  # nothing is listed at all, and the catalog has no type or region to show
            return render(request, "marketplace/market_depth.html", context)
        depth = market_depth.market_depth(instance_type=instance_type, region=region)
        # The form shows what the page shows, also where the visitor left a choice to the page.
        context["form"] = MarketDepthForm(initial={"instance_type": selection[0], "region": selection[1]}, **choices)
        context.update(depth=depth, depth_charts=_depth_charts(depth))
    return render(request, "marketplace/market_depth.html", context)


def _depth_charts(depth: market_depth.MarketDepth) -> list[dict]:
    symbol = platform_currency().symbol
    labels = [money_value(level.price_per_hour, 4) for level in depth.levels]
    charts = [
        chart_spec(
            "depth-levels",
            _("Instances listed by price"),
            kind="bar",
            labels=labels,
            series=[
                Series(_("Available at this price"), [level.available for level in depth.levels]),
                Series(_("At this price or cheaper"), [level.cumulative for level in depth.levels]),
            ],
            x_title=_("Price per instance-hour"),
            y_title=_("Instances"),
        )
    ]
    fills = sorted(depth.recent_fills, key=lambda fill: fill.at)
    if fills:
        kinds = [(value, str(label)) for value, label in Pricing.choices]
        charts.append(
            chart_spec(
                "depth-fills",
                _("Recent fill prices"),
                kind="bar",
                labels=[date_format(fill.at, "M j H:i") for fill in fills],
                series=[
                    Series(label, [fill.price_per_hour if fill.pricing == value else None for fill in fills])
                    for value, label in kinds
                ],
                x_title=_("Time placed (UTC)"),
                y_title=_("%(symbol)s per instance-hour") % {"symbol": symbol},
                value_format="money",
            )
        )
    return charts


@page_scope(Scope.STAFF)
@staff_page
def market_overview_page(request):
    """Staff: supply and demand per instance type x region, gross volume and the platform take."""
    overview = market_depth.market_overview()
    symbol = platform_currency().symbol
    chart = chart_spec(
        "market-volume",
        _("Gross volume and platform take per day"),
        kind="bar",
        labels=[date_format(day.day, "M j") for day in overview.days],
        series=[
            Series(_("Gross volume"), [day.gross for day in overview.days]),
            Series(_("Platform take"), [day.take for day in overview.days]),
        ],
        x_title=_("Day (UTC)"),
        y_title=symbol,
        value_format="money",
    )
    return render(request, "marketplace/market_overview.html", {"overview": overview, "volume_chart": chart})
