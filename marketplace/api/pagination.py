"""Paging, one parser for the API and the pages: `?page=N` and `?page_size=M` are whole numbers in
ASCII digits (`marketplace.api.inputs.whole_number`). The API answers anything else with a 400
naming the parameter; a page shows its first page."""

from __future__ import annotations

from base64 import b64decode
from urllib.parse import parse_qs

from django.core.paginator import Page, Paginator
from django.utils.functional import cached_property
from django.utils.translation import gettext
from rest_framework import exceptions, pagination
from rest_framework.exceptions import ValidationError

from .inputs import whole_number

MAX_PAGE_SIZE = 200
MAX_PAGE_NUMBER = 1_000_000


def page_number(raw: str | None) -> int | None:
    """A page number from the query string: 1..1,000,000 in ASCII digits, else None."""
    return whole_number(raw, maximum=MAX_PAGE_NUMBER)


def page_size(raw: str | None) -> int | None:
    """A page size from the query string: 1..200 in ASCII digits, else None."""
    return whole_number(raw, maximum=MAX_PAGE_SIZE)


def page_of(object_list, per_page: int, raw: str | None, *, search: bool = False) -> Page:
    """For pages: the requested page, the first for a malformed number, the last past the end.
    `search`: a search over the whole market, counted up to SEARCH_COUNT_LIMIT (shown as "1000+")."""
    paginator_class = BoundedCountPaginator if search else Paginator
    return paginator_class(object_list, per_page).get_page(page_number(raw) or 1)


def _between(maximum: int) -> str:
    return gettext("Must be a whole number between 1 and %(maximum)s.") % {"maximum": maximum}


class PageNumberPagination(pagination.PageNumberPagination):
    """?page=N&page_size=M (at most 200). Malformed values are a 400, not silently replaced."""

    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def paginate_queryset(self, queryset, request, view=None):
        errors = {}
        raw_page = request.query_params.get(self.page_query_param)
        if raw_page is not None and raw_page not in self.last_page_strings and page_number(raw_page) is None:
            errors[self.page_query_param] = [_between(MAX_PAGE_NUMBER)]
        raw_size = request.query_params.get(self.page_size_query_param)
        if raw_size is not None and page_size(raw_size) is None:
            errors[self.page_size_query_param] = [_between(MAX_PAGE_SIZE)]
        if errors:
            raise ValidationError(errors)
        return super().paginate_queryset(queryset, request, view)


class CursorPagination(pagination.CursorPagination):
    """For lists that grow without bound (instances, orders, usage, ledger, ...): newest first by id,
    `next` and `previous` links carrying an opaque `cursor`, `?page_size=M` (at most 200). No count
    and no offset: a page is the same queries whatever the length of the list or how deep it is.
    `?page=` is refused (follow `next`), and a cursor the list did not give out is a 400."""

    ordering = "-id"
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def paginate_queryset(self, queryset, request, view=None):
        errors = {}
        if "page" in request.query_params:
            errors["page"] = [gettext("This list pages by cursor: follow the `next` link.")]
        raw_size = request.query_params.get(self.page_size_query_param)
        if raw_size is not None and page_size(raw_size) is None:
            errors[self.page_size_query_param] = [_between(MAX_PAGE_SIZE)]
        if errors:
            raise ValidationError(errors)
        try:
            return super().paginate_queryset(queryset, request, view)
        except exceptions.NotFound:  # DRF's answer to a cursor it cannot decode
            raise ValidationError({self.cursor_query_param: [gettext("Not a cursor this list gave out.")]}) from None

    def decode_cursor(self, request):
        # DRF skips characters that are not base64 and reads what is left, so "%%%" would be the
        # first page: a cursor must be one this class encoded (base64 of o=, r= or p= tokens).
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is not None:
            try:
                tokens = parse_qs(b64decode(encoded.encode("ascii"), validate=True).decode("ascii"))
            except (ValueError, UnicodeError):
                raise exceptions.NotFound from None
            if not set(tokens) & {"o", "r", "p"}:
                raise exceptions.NotFound
            # Positions are ids and offsets whole numbers: anything else would reach the query.
            for name in ("o", "p"):
                if any(not (v.isascii() and v.isdigit()) for v in tokens.get(name, [])):
                    raise exceptions.NotFound
        return super().decode_cursor(request)


SEARCH_COUNT_LIMIT = 1_000


class BoundedCountPaginator(Paginator):
    """Counts at most SEARCH_COUNT_LIMIT rows (`SELECT COUNT(*)` of a subquery with a LIMIT), so a
    page costs the same whatever the size of the market; `count_capped` says the count stopped."""

    count_capped = False

    @cached_property
    def count(self) -> int:
        # Only the filters: no ordering (a sort of every match before the LIMIT) and no columns
        # (the page's joins and per-row subqueries).
        counted = self.object_list.order_by().values("pk")[: SEARCH_COUNT_LIMIT + 1].count()
        self.count_capped = counted > SEARCH_COUNT_LIMIT
        return min(counted, SEARCH_COUNT_LIMIT)


class SearchPagination(PageNumberPagination):
    """Pages of a search over the whole market (offers): `count` is exact up to 1,000 matches;
    beyond, it is 1,000 with `count_capped: true` (narrow the search to see the rest): counting every
    match of a search over a million offers would cost more than the page itself."""

    django_paginator_class = BoundedCountPaginator

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        response.data["count_capped"] = self.page.paginator.count_capped
        return response

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["count_capped"] = {
            "type": "boolean",
            "description": f"True when more than {SEARCH_COUNT_LIMIT:,} offers match: `count` stops there.",
        }
        schema["required"] = [*schema.get("required", []), "count_capped"]
        return schema
