"""Market depth over the API: the public order book of an instance type in a region."""

from __future__ import annotations

from django.utils.translation import gettext
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.currency import platform_currency
from marketplace.errors import InvalidInput
from marketplace.money import PRICE_DIGITS, PRICE_PLACES
from orders import market_depth
from orders.models import Pricing

from . import json_types
from .filters import UnknownParameter


def _price(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES, **kwargs)


class PriceLevelSerializer(json_types.Serializer):
    """Listed instances at one price per instance-hour."""

    price_per_hour = _price(help_text="Per instance-hour.")
    available = serializers.IntegerField(help_text="Instances that can be ordered at this price.")
    cumulative = serializers.IntegerField(help_text="Instances at this price or cheaper.")
    offers = serializers.IntegerField(help_text="Offers (host x instance type) at this price.")
    offer = serializers.IntegerField(source="offer_id", help_text="One offer at this price: order it by `offer`.")


class FillSerializer(json_types.Serializer):
    """Instances one order got at one price: no buyer, order or host is named."""

    at = serializers.DateTimeField(help_text="When the order's first instance here was placed.")
    pricing = serializers.ChoiceField(choices=Pricing.choices)
    price_per_hour = _price(help_text="The agreed price per instance-hour (the bid, for spot).")
    count = serializers.IntegerField(help_text="Instances the order got at this price.")


class SpotFillsSerializer(json_types.Serializer):
    """Bids of the spot instances placed in the fills window: count, lowest, median, highest."""

    count = serializers.IntegerField()
    min_per_hour = _price(allow_null=True)
    median_per_hour = _price(allow_null=True)
    max_per_hour = _price(allow_null=True)


class SpotClearingSerializer(json_types.Serializer):
    """What a spot bid for one instance meets now."""

    clearing_bid_per_hour = _price(
        allow_null=True,
        help_text="The lowest bid that gets one instance now: on each host a spot order could use, its floor "
        "if an instance fits where nothing runs, else one price step above the highest running spot bid it "
        "would preempt; the lowest over the hosts. Null when no host can take one.",
    )
    floor_per_hour = _price(allow_null=True, help_text="The lowest minimum bid of those hosts.")
    free_at_floor = serializers.IntegerField(
        help_text="Instances that fit where nothing runs: what bids at each host's floor get without preempting."
    )
    lowest_running_bid_per_hour = _price(allow_null=True, help_text="The lowest bid of the running spot instances.")
    running = serializers.IntegerField(help_text="Running spot instances of the type in the region.")
    fills = SpotFillsSerializer(help_text="Bids of the spot instances placed in the fills window.")


class MarketDepthSerializer(json_types.Serializer):
    """The order book of an instance type in a region, in the platform currency."""

    instance_type = serializers.CharField(source="instance_type.name")
    region = serializers.CharField(source="region.code")
    currency = serializers.SerializerMethodField()
    as_of = serializers.DateTimeField()
    total_available = serializers.IntegerField(help_text="Instances listed at every price level.")
    level_count = serializers.IntegerField(help_text="Price levels in all; `levels` lists the cheapest 50.")
    levels = PriceLevelSerializer(many=True, help_text="Cheapest first.")
    fills_since = serializers.DateTimeField()
    recent_fills = FillSerializer(many=True, help_text="Newest first, at most 50; no buyer is named.")
    spot = SpotClearingSerializer()

    def get_currency(self, obj) -> str:
        return platform_currency().code


QUERY_PARAMETERS = ("instance_type", "region")


class MarketDepthView(APIView):
    """The order book of an instance type in a region: listed offers of verified hosts grouped by
    price per instance-hour, cheapest first, with the instances available at each price and
    cumulatively; the fills of the last 24 hours; and what a spot bid meets now. Open to anyone."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(
        parameters=[
            OpenApiParameter("instance_type", str, required=True, description="An instance type's name."),
            OpenApiParameter("region", str, required=True, description="A region's code."),
        ],
        responses=MarketDepthSerializer,
    )
    def get(self, request):
        unknown = sorted(set(request.query_params) - {*QUERY_PARAMETERS, "format"})
        if unknown:
            raise UnknownParameter({name: [gettext("Unknown query parameter.")] for name in unknown})
        # Present but naming nothing (empty included) is a 404 from `market_depth_target`.
        missing = [name for name in QUERY_PARAMETERS if name not in request.query_params]
        if missing:
            raise InvalidInput(
                gettext("Give %(names)s.") % {"names": " and ".join(missing)},
                fields={name: [gettext("This parameter is required.")] for name in missing},
            )
        instance_type, region = market_depth.market_depth_target(
            instance_type=request.query_params["instance_type"], region=request.query_params["region"]
        )
        depth = market_depth.market_depth(instance_type=instance_type, region=region)
        return Response(MarketDepthSerializer(depth).data)
