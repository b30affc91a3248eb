"""Request body parsers: DRF's JSON, form and multipart parsers, plus the checks every body gets
before any view sees it (`marketplace.api.inputs.body_problem`):

- a string or key with a control character (NUL, which PostgreSQL refuses in text; a lone
  surrogate, which cannot be encoded; ESC and the like) is a 400 `invalid` naming the field path;
- JSON nested deeper than 32 levels is a 400 `parse_error` (100,000 nested lists would otherwise
  overflow the interpreter's stack while parsing).

Installed for every API view by settings: REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = PARSER_CLASSES.
"""

from __future__ import annotations

from typing import Any

from django.http import QueryDict
from django.utils.translation import gettext, gettext_lazy
from rest_framework import exceptions, parsers

from .inputs import CONTROL_CHARACTER_MESSAGE, MAX_BODY_DEPTH, body_problem, control_character_in, printable

PARSER_CLASSES = [
    "marketplace.api.parsers.JSONParser",
    "marketplace.api.parsers.FormParser",
    "marketplace.api.parsers.MultiPartParser",
]


class ControlCharacters(exceptions.ValidationError):
    detail_prefix = gettext_lazy("Control characters (such as NUL) are not allowed in")


def _check(data: Any) -> None:
    if isinstance(data, QueryDict):  # a form: flat, each field named
        for name, values in data.lists():
            if any(control_character_in(text) for text in (name, *values)):
                raise ControlCharacters({printable(name): [gettext(CONTROL_CHARACTER_MESSAGE)]})
        return
    problem = body_problem(data, max_depth=MAX_BODY_DEPTH)
    if problem is None:
        return
    if problem.too_deep:
        raise exceptions.ParseError(
            gettext("JSON parse error - %(problem)s (at %(path)s)") % {"problem": problem.message, "path": problem.path}
        )
    raise ControlCharacters({problem.path: [problem.message]})


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(
                gettext("JSON parse error - %(problem)s")
                % {"problem": gettext("Nested deeper than %(depth)s levels.") % {"depth": MAX_BODY_DEPTH}}
            ) from None
        _check(data)
        return data


class FormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        _check(data)
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        _check(parsed.data)
        return parsed
