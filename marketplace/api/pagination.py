"""Paging, one parser for the API and the pages: `?page=N` and `?page_size=M` are whole numbers in
ASCII digits (`marketplace.api.inputs.whole_number`). The API answers anything else with a 400
naming the parameter; a page shows its first page."""

from __future__ import annotations

from django.core.paginator import Page, Paginator
from rest_framework import pagination
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


def page_of(object_list, per_page: int, raw: str | None) -> Page:
    """For pages: the requested page, the first for a malformed number, the last past the end."""
    return Paginator(object_list, per_page).get_page(page_number(raw) or 1)


class PageNumberPagination(pagination.PageNumberPagination):
    """?page=N&page_size=M (at most 200). Malformed values are a 400, not silently replaced."""

    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def paginate_queryset(self, queryset, request, view=None):
        errors = {}
        raw_page = request.query_params.get(self.page_query_param)
        if raw_page is not None and raw_page not in self.last_page_strings and page_number(raw_page) is None:
            errors[self.page_query_param] = [f"Must be a whole number between 1 and {MAX_PAGE_NUMBER}."]
        raw_size = request.query_params.get(self.page_size_query_param)
        if raw_size is not None and page_size(raw_size) is None:
            errors[self.page_size_query_param] = [f"Must be a whole number between 1 and {MAX_PAGE_SIZE}."]
        if errors:
            raise ValidationError(errors)
        return super().paginate_queryset(queryset, request, view)
