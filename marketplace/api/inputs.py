"""Untrusted input, checked in one place for the API and the pages alike.

- `whole_number`: page numbers, page sizes and ids typed into forms. ASCII digits only: Python's
  `int()` also reads other scripts' digits ('٣') and `str.isdigit()` accepts superscripts ('²')
  that `int()` then refuses, so neither is a validator.
- `control_character_in` / `body_problem`: text PostgreSQL cannot store (NUL, lone surrogates)
  and other control characters nobody types (everything below U+0020 but tab, newline and
  carriage return; DEL; the C1 range), in any string or key of a parsed body, and how deep the
  body nests.
- `text_or_invalid`: the same rule for a text field of an HTML form (a form error).
- `lookup_or_404` / `CheckedLookupMixin`: a value from the URL path used to look a row up.
- `storable_text`: a trusted sender's payload (a signed Stripe event) kept as is but for what
  PostgreSQL cannot store.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from django.http import Http404
from django.utils.translation import gettext, gettext_noop

from marketplace.errors import InvalidInput
from marketplace.models import UNCLEAN_TEXT_CLASS

CONTROL_CHARACTERS = re.compile(f"[{UNCLEAN_TEXT_CLASS}]")
CONTROL_CHARACTER_MESSAGE = gettext_noop("Control characters (such as NUL) are not allowed.")  # gettext() where used
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # PostgreSQL refuses NUL; UTF-8 cannot encode a lone surrogate
MAX_BODY_DEPTH = 32
MAX_LOOKUP_LENGTH = 255
MAX_WHOLE_NUMBER_DIGITS = 18  # below 2**63: fits every integer column


def whole_number(raw: object, *, minimum: int = 1, maximum: int | None = None) -> int | None:
    """`raw` as an int when it is a whole number written in ASCII digits ('12'; an int as is),
    within [minimum, maximum]; None for anything else: '٣', '²', '1e3', '-1', '+1', ' 1', '1.0',
    '', more than 18 digits, a bool."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and 0 < len(raw) <= MAX_WHOLE_NUMBER_DIGITS and raw.isascii() and raw.isdigit():
        value = int(raw)
    else:
        return None
    if value < minimum or (maximum is not None and value > maximum):
        return None
    return value


def control_character_in(text: str) -> bool:
    return CONTROL_CHARACTERS.search(text) is not None


class BodyProblem(NamedTuple):
    path: str  # "requirements.accelerator_kinds.1"; "non_field_errors" for the body itself
    message: str
    too_deep: bool  # else: a control character


def body_problem(data: Any, *, max_depth: int = MAX_BODY_DEPTH) -> BodyProblem | None:
    """The first thing wrong with a parsed body: a string or key with a control character, or
    nesting deeper than `max_depth` (the top-level object or list is depth 1). None when fine.

    Iterative, so a body just under the interpreter's recursion limit cannot overflow it here."""
    stack: list[tuple[Any, tuple[str, ...], int]] = [(data, (), 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if control_character_in(value):
                return BodyProblem(_path(path), gettext(CONTROL_CHARACTER_MESSAGE), too_deep=False)
            continue
        if isinstance(value, dict):
            items: list[tuple[str, Any]] = []
            for key, item in value.items():
                key = str(key)
                if control_character_in(key):
                    return BodyProblem(
                        _path((*path, printable(key))), gettext(CONTROL_CHARACTER_MESSAGE), too_deep=False
                    )
                items.append((key, item))
        elif isinstance(value, list | tuple):
            items = [(str(index), item) for index, item in enumerate(value)]
        else:
            continue
        if depth > max_depth:
            return BodyProblem(
                _path(path), gettext("Nested deeper than %(depth)s levels.") % {"depth": max_depth}, too_deep=True
            )
        stack.extend((item, (*path, key), depth + 1) for key, item in reversed(items))
    return None


def _path(path: tuple[str, ...]) -> str:
    return ".".join(path) or "non_field_errors"


def printable(text: str) -> str:
    """A key as it can be named back in an error (its control characters escaped)."""
    return CONTROL_CHARACTERS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def storable_text(data: Any) -> Any:
    """A copy of parsed JSON from a trusted sender (a signed webhook) where what PostgreSQL cannot
    store as text (NUL, lone surrogates) is replaced by U+FFFD, in values and keys. Iterative."""

    def clean(value: Any) -> Any:
        return UNSTORABLE.sub("\ufffd", value) if isinstance(value, str) else value

    root: list[Any] = [data]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        value = container[key]
        if isinstance(value, dict):
            copied = {clean(k): v for k, v in value.items()}
            container[key] = copied
            stack.extend((copied, k) for k in copied)
        elif isinstance(value, list):
            container[key] = copied_list = list(value)
            stack.extend((copied_list, index) for index in range(len(copied_list)))
        else:
            container[key] = clean(value)
    return root[0]


def text_or_invalid(value: str, *, field: str) -> str:
    """A form value that is stored or looked up as text; InvalidInput naming the field otherwise."""
    if control_character_in(value):
        raise InvalidInput(
            gettext("Control characters (such as NUL) are not allowed in %(field)s.") % {"field": field},
            fields={field: [gettext("Control characters are not allowed.")]},
        )
    return value


def lookup_or_404(value: object) -> None:
    """A path value used to find a row: one with control characters (PostgreSQL refuses NUL in a
    query) or longer than any key names nothing, so it is a 404 before any query runs."""
    if isinstance(value, str) and (len(value) > MAX_LOOKUP_LENGTH or control_character_in(value)):
        raise Http404("No such object.")


class CheckedLookupMixin:
    """For API views: every value captured from the URL path goes through `lookup_or_404` before
    the handler runs (so `get_object`, custom lookups and actions alike see only clean values)."""

    kwargs: dict[str, Any]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        for value in self.kwargs.values():
            lookup_or_404(value)
