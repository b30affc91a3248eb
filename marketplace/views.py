"""Public catalog pages: offer search and instance types."""

from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from .api.filters import InstanceTypeFilterSet, OfferFilterSet
from .models import InstanceType
from .selectors import instance_type_list_with_market, offer_list

OFFERS_PER_PAGE = 25


def _query_without(request, *names: str) -> str:
    query = request.GET.copy()
    for name in names:
        query.pop(name, None)
    return query.urlencode()


SORTABLE_COLUMNS = ("price_per_hour", "price_per_tflop_hour", "energy_kwh_per_hour", "reliability")


def _sort_links(request) -> dict[str, dict[str, str]]:
    """For each sortable column: the query string that sorts by it (toggling direction) and its arrow."""
    current = request.GET.get("ordering", "")
    base = _query_without(request, "page", "ordering")
    links = {}
    for column in SORTABLE_COLUMNS:
        descending_now = current == f"-{column}"
        ascending_now = current == column
        target = f"-{column}" if ascending_now else column
        query = f"{base}&ordering={target}" if base else f"ordering={target}"
        arrow = "▲" if ascending_now else "▼" if descending_now else ""
        links[column] = {"query": query, "arrow": arrow}
    return links


def offer_search(request):
    params = request.GET.copy()
    params.pop("page", None)
    filterset = OfferFilterSet(params, queryset=offer_list())
    # Invalid filters show their errors and no results, never silently unfiltered rows.
    offers = filterset.qs if filterset.is_valid() else offer_list().none()
    page = Paginator(offers, OFFERS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "marketplace/offer_list.html",
        {
            "filterset": filterset,
            "page": page,
            "sort": _sort_links(request),
            "query_without_page": _query_without(request, "page"),
        },
    )


def offer_detail(request, offer_id: int):
    offer = get_object_or_404(offer_list(), pk=offer_id)
    similar = (
        offer_list().filter(instance_type=offer.instance_type).exclude(pk=offer.pk).order_by("price_per_hour")[:10]
    )
    from orders.forms import RentForm

    return render(
        request, "marketplace/offer_detail.html", {"offer": offer, "similar": similar, "rent_form": RentForm()}
    )


def instance_type_list(request):
    params = request.GET.copy()
    params.pop("page", None)
    filterset = InstanceTypeFilterSet(params or None, queryset=instance_type_list_with_market())
    if filterset.is_bound:
        types = filterset.qs if filterset.is_valid() else instance_type_list_with_market().none()
    else:
        types = instance_type_list_with_market()
    page = Paginator(types, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "marketplace/instance_type_list.html",
        {"filterset": filterset, "page": page, "query_without_page": _query_without(request, "page")},
    )


def instance_type_detail(request, name: str):
    instance_type = get_object_or_404(InstanceType.objects.active().select_related("accelerator_model"), name=name)
    offers = offer_list().filter(instance_type=instance_type).order_by("price_per_hour", "id")
    page = Paginator(offers, OFFERS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "marketplace/instance_type_detail.html",
        {"instance_type": instance_type, "page": page, "query_without_page": ""},
    )
