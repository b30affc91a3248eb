from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import translation


class DeploymentLanguageMiddleware:
    """Pages speak the language a person picked with the switcher (Django's language cookie), else the
    deployment's LANGUAGE_CODE. Unlike Django's LocaleMiddleware it ignores Accept-Language: a Chinese
    deployment is Chinese in any browser until the person switches."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        chosen = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME, "")
        language = settings.LANGUAGE_CODE
        if chosen and translation.check_for_language(chosen) and chosen in dict(settings.LANGUAGES):
            language = chosen
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()
        response = self.get_response(request)
        response.headers.setdefault("Content-Language", translation.get_language())
        translation.deactivate()
        return response
