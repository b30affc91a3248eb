from drf_spectacular.utils import extend_schema
from rest_framework import viewsets

from marketplace.databases import read_alias
from marketplace.models import AcceleratorModel, InstanceType, Offer, Region

from .filters import InstanceTypeFilterSet, OfferApiFilterSet
from .inputs import CheckedLookupMixin
from .offer_rows import OFFER_ROW_COLUMNS, offer_row
from .pagination import SearchPagination
from .serializers import AcceleratorModelSerializer, InstanceTypeSerializer, OfferSerializer, RegionSerializer


class AcceleratorModelViewSet(CheckedLookupMixin, viewsets.ReadOnlyModelViewSet):
    """Reference data: accelerator and CPU models with their public figures."""

    queryset = AcceleratorModel.objects.filter(is_active=True)
    serializer_class = AcceleratorModelSerializer
    lookup_field = "slug"


class InstanceTypeViewSet(CheckedLookupMixin, viewsets.ReadOnlyModelViewSet):
    """Standard instance types buyers order."""

    queryset = InstanceType.objects.active().select_related("accelerator_model")
    serializer_class = InstanceTypeSerializer
    filterset_class = InstanceTypeFilterSet
    lookup_field = "name"
    lookup_value_regex = "[^/]+"  # names contain dots (h100-80g.8x)


class RegionViewSet(CheckedLookupMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Region.objects.prefetch_related("zones")
    serializer_class = RegionSerializer
    lookup_field = "code"


@extend_schema(description="Offers that can be ordered now, one per host x instance type.")
class OfferViewSet(CheckedLookupMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Offer.objects.all()
    serializer_class = OfferSerializer
    filterset_class = OfferApiFilterSet
    pagination_class = SearchPagination

    def get_queryset(self):
        # `listed()` reads the clock, so it must run per request. Searches read the replica, if any.
        return Offer.objects.using(read_alias()).listed().with_related()

    def list(self, request, *args, **kwargs):
        """Three lean queries whatever the size of the market: the bounded count and the page's
        ids read the offers table with the filters' joins only (down the ordering's index), then
        the page's rows as plain values (joins and per-row subqueries for 50 rows, no model
        objects), formatted by the serializer's own fields: the same JSON as `OfferSerializer`."""
        queryset = self.filter_queryset(self.get_queryset())
        ids = self.paginate_queryset(queryset.values_list("pk", flat=True))
        assert ids is not None  # always paginated
        by_id = {
            values["id"]: values
            for values in queryset.order_by().filter(pk__in=ids).values(*OFFER_ROW_COLUMNS.values())
        }
        fields = OfferSerializer().fields
        rows = [offer_row(by_id[pk], fields) for pk in ids if pk in by_id]  # one sold meanwhile: left out
        return self.get_paginated_response(rows)
