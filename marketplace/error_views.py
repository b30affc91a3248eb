"""Site-wide 404/500 handlers: JSON in the API's error shape under /api/, pages elsewhere."""

from django.http import JsonResponse
from django.utils.translation import gettext as _
from django.views import defaults

from .errors import ErrorCode, error_body


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def not_found(request, exception=None):
    if _is_api(request):
        return JsonResponse(
            error_body(ErrorCode.NOT_FOUND, _("No API resource at %(path)s.") % {"path": request.path}), status=404
        )
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return JsonResponse(
            error_body(ErrorCode.SERVER_ERROR, _("Something went wrong on our side; it has been logged.")), status=500
        )
    return defaults.server_error(request)
