from rest_framework import pagination
from rest_framework.exceptions import ValidationError

MAX_PAGE_SIZE = 200


class PageNumberPagination(pagination.PageNumberPagination):
    """?page=N&page_size=M (at most 200). Malformed values are a 400, not silently replaced."""

    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def paginate_queryset(self, queryset, request, view=None):
        errors = {}
        for name, maximum in (("page", None), ("page_size", MAX_PAGE_SIZE)):
            raw = request.query_params.get(name)
            if raw is None or (name == "page" and raw == "last"):
                continue
            if not raw.isdigit() or int(raw) < 1 or (maximum and int(raw) > maximum):
                limit = f" between 1 and {maximum}" if maximum else " of at least 1"
                errors[name] = [f"Must be a whole number{limit}."]
        if errors:
            raise ValidationError(errors)
        return super().paginate_queryset(queryset, request, view)
