"""Strict filtering: an unknown query parameter or a malformed value is a 400 naming it."""

from __future__ import annotations

from django import forms
from django.db.models import F
from django.utils.functional import Promise, lazy
from django.utils.translation import gettext, gettext_lazy
from django_filters import rest_framework as filters
from rest_framework import exceptions

from marketplace.currency import platform_currency
from marketplace.errors import ErrorCode
from marketplace.models import AcceleratorKind, AcceleratorModel, InstanceType, Offer, Region
from marketplace.selectors import offers_with_terms

ALWAYS_ALLOWED_PARAMETERS = frozenset({"page", "page_size", "cursor", "format"})


class InvalidFilter(exceptions.ValidationError):
    error_code = ErrorCode.INVALID_FILTER
    detail_prefix = gettext_lazy("Invalid filter value for")


class UnknownParameter(exceptions.ValidationError):
    error_code = ErrorCode.UNKNOWN_PARAMETER
    detail_prefix = gettext_lazy("Unknown query parameter")


class StrictFilterBackend(filters.DjangoFilterBackend):
    """DjangoFilterBackend that refuses query parameters the view does not understand."""

    def filter_queryset(self, request, queryset, view):
        filterset_class = self.get_filterset_class(view, queryset)
        allowed = set(ALWAYS_ALLOWED_PARAMETERS) | set(getattr(view, "extra_query_parameters", ()))
        if filterset_class is not None:
            allowed |= set(filterset_class.base_filters)
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise UnknownParameter({name: [gettext("Unknown query parameter.")] for name in unknown})
        # django-filter reads `?verified=` as "no filter"; the schema says a value, so say one is missing.
        empty = sorted(name for name, values in request.query_params.lists() if "" in values)
        if empty:
            required = gettext("A value is required (leave the parameter out for any).")
            raise InvalidFilter({name: [required] for name in empty})
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if not filterset.is_valid():
            raise InvalidFilter({name: [str(e) for e in errs] for name, errs in filterset.errors.items()})
        return filterset.qs


class IntegerFilter(filters.NumberFilter):
    field_class = forms.IntegerField


class NullsLastOrderingFilter(filters.OrderingFilter):
    """Ordering where missing values (e.g. no reliability yet) sort last both ways; id breaks ties."""

    def filter(self, qs, value):
        if not value:
            return qs
        ordering = []
        for param in value:
            descending = param.startswith("-")
            field = self.param_map[param.lstrip("-")]
            ordering.append(F(field).desc(nulls_last=True) if descending else F(field).asc(nulls_last=True))
        return qs.order_by(*ordering, "id")


def _max_price_text() -> str:
    return gettext("Max. %(symbol)s per hour") % {"symbol": platform_currency().symbol}


# A label read when the page is drawn: in the person's language and the deployment's currency.
max_price_label = lazy(_max_price_text, str)


def at_least(label: str | Promise, field_name: str) -> IntegerFilter:
    """A whole-number lower bound, e.g. ?min_vcpus=16."""
    return IntegerFilter(label=label, field_name=field_name, lookup_expr="gte", min_value=0)


def accelerator_model_filter() -> filters.ModelChoiceFilter:
    """By model slug (h100-80g); an unknown slug is an error, not an empty result."""
    return filters.ModelChoiceFilter(
        label=gettext_lazy("Accelerator model"),
        field_name="accelerator_model",
        to_field_name="slug",
        queryset=AcceleratorModel.objects.all(),
    )


class InstanceTypeFilterSet(filters.FilterSet):
    accelerator_model = accelerator_model_filter()
    accelerator_kind = filters.ChoiceFilter(
        label=gettext_lazy("Accelerator kind"), method="filter_kind", choices=AcceleratorKind.choices
    )
    family = filters.ChoiceFilter(label=gettext_lazy("Family"), choices=InstanceType.Family.choices)
    min_accelerators = at_least(gettext_lazy("Min. accelerators"), "accelerator_count")
    min_vcpus = at_least(gettext_lazy("Min. vCPUs"), "vcpus")
    min_ram_gb = at_least(gettext_lazy("Min. RAM (GB)"), "ram_gb")

    class Meta:
        model = InstanceType
        fields: list[str] = []

    def filter_kind(self, queryset, name, value):
        if value == AcceleratorKind.CPU:
            return queryset.filter(accelerator_model__isnull=True)
        return queryset.filter(accelerator_model__kind=value)


class OfferFilterSet(filters.FilterSet):
    instance_type = filters.ModelChoiceFilter(
        label=gettext_lazy("Instance type"),
        field_name="instance_type",
        to_field_name="name",
        queryset=InstanceType.objects.all(),
    )
    accelerator_model = accelerator_model_filter()
    # The figures below are the offer's own copies (no join per row at a million offers).
    accelerator_kind = filters.ChoiceFilter(
        label=gettext_lazy("Accelerator kind"), field_name="accelerator_kind", choices=AcceleratorKind.choices
    )
    min_accelerators = at_least(gettext_lazy("Min. accelerators"), "accelerator_count")
    min_accelerator_memory_gb = at_least(gettext_lazy("Min. memory per accelerator (GB)"), "accelerator_memory_gb")
    min_vcpus = at_least(gettext_lazy("Min. vCPUs"), "vcpus")
    min_ram_gb = at_least(gettext_lazy("Min. RAM (GB)"), "ram_gb")
    region = filters.ModelChoiceFilter(
        label=gettext_lazy("Region"), field_name="region", to_field_name="code", queryset=Region.objects.all()
    )
    tier = filters.ChoiceFilter(label=gettext_lazy("Tier"), choices=Region.Tier.choices)
    max_price_per_hour = filters.NumberFilter(
        label=max_price_label(),
        field_name="price_per_hour",
        lookup_expr="lte",
        min_value=0,
        max_digits=14,
        decimal_places=6,
    )
    verified = filters.ChoiceFilter(
        label=gettext_lazy("Hosts"),
        method="filter_verified",
        choices=[
            ("true", gettext_lazy("Verified only")),
            ("all", gettext_lazy("Verified and unverified")),
            ("false", gettext_lazy("Unverified only")),
        ],
        empty_label=None,
    )
    min_reliability = filters.NumberFilter(
        label=gettext_lazy("Min. reliability (0-1)"),
        field_name="reliability",
        lookup_expr="gte",
        min_value=0,
        max_value=1,
        max_digits=5,
        decimal_places=4,
    )
    ordering = NullsLastOrderingFilter(
        fields=(
            ("price_per_hour", "price_per_hour"),
            ("price_per_tflop_hour", "price_per_tflop_hour"),
            ("energy_kwh_per_hour", "energy_kwh_per_hour"),
            ("reliability", "reliability"),
        )
    )

    class Meta:
        model = Offer
        fields: list[str] = []

    def filter_queryset(self, queryset):
        # Search defaults to verified hosts, as orders do; `verified=all` (or `false`) shows the
        # rest (orders take them with `allow_unverified`).
        if not self.form.cleaned_data.get("verified"):
            queryset = queryset.filter(verified=True)
        return offers_with_terms(super().filter_queryset(queryset))

    def filter_verified(self, queryset, name, value):
        if value == "true":
            return queryset.filter(verified=True)
        if value == "false":
            return queryset.filter(verified=False)
        return queryset


class SlugInFilter(filters.BaseInFilter, filters.CharFilter):
    """?name=a,b: a comma-separated list of names."""


class OfferApiFilterSet(OfferFilterSet):
    """The API's offer filters: the page's, and lists of models or regions, and an upper bound on
    accelerators (what the command line's query language translates to)."""

    max_accelerators = IntegerFilter(
        label=gettext_lazy("Max. accelerators"), field_name="accelerator_count", lookup_expr="lte", min_value=0
    )
    # field_name: the column the schema describes; the methods look the names up.
    accelerator_model__in = SlugInFilter(
        label=gettext_lazy("Accelerator models (comma-separated slugs)"),
        field_name="accelerator_model__slug",
        method="filter_models_in",
    )
    region__in = SlugInFilter(
        label=gettext_lazy("Regions (comma-separated codes)"), field_name="region__code", method="filter_regions_in"
    )

    def filter_models_in(self, queryset, name, value):
        ids = _known(AcceleratorModel, "slug", "accelerator_model__in", value)
        return queryset.filter(accelerator_model_id__in=ids)

    def filter_regions_in(self, queryset, name, value):
        return queryset.filter(region_id__in=_known(Region, "code", "region__in", value))


def _known(model, field: str, name: str, values: list[str]) -> list[int]:
    """The ids of the rows named in `values`; a name that matches none is an error naming it."""
    wanted = {value.strip() for value in values if value.strip()}
    rows = dict(model.objects.filter(**{f"{field}__in": wanted}).values_list(field, "id"))
    unknown = sorted(wanted - set(rows))
    if unknown or not wanted:
        problem = (
            gettext("Unknown: %(names)s.") % {"names": ", ".join(unknown)} if unknown else gettext("Name at least one.")
        )
        raise InvalidFilter({name: [problem]})
    return list(rows.values())
