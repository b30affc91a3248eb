"""JSON bodies are taken at their word: a value of the wrong JSON type is a 400, not coerced.

DRF converts what it can: `5` into the string "5" for a text field, `"12"` into 12 for an integer,
`true` into 1.0 for a float, and money written `1E+2` into 100. A client that sends a number where
the schema says text has a bug the API should show it, and money in exponent notation (or as a JSON
number, which most clients hold as a binary float) is not money. Every API serializer derives from
`Serializer` or `ModelSerializer` here, which check each writable field's JSON type before DRF's
own validation. Form-encoded bodies (all strings) are left to DRF.
"""

from __future__ import annotations

import re
from typing import Any

from django.http import QueryDict
from django.utils.translation import gettext as _
from rest_framework import serializers
from rest_framework.fields import empty

PLAIN_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
TEXT_FIELDS = (
    serializers.CharField,
    serializers.DateTimeField,
    serializers.DateField,
    serializers.TimeField,
    serializers.DurationField,
    serializers.UUIDField,
    serializers.SlugRelatedField,
)


def json_type_problem(field: serializers.Field, value: Any) -> str | None:
    """Why `value`, parsed from JSON, cannot be what `field` takes; None when its type fits."""
    if value is None:
        return None  # DRF's own allow_null check answers
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else _("Expected true or false.")
    if isinstance(field, serializers.DecimalField):
        if not isinstance(value, str):
            return _('Expected a decimal written as a string, such as "12.50".')
        return None if PLAIN_DECIMAL.fullmatch(value.strip()) else _('A plain decimal such as "12.50" (no exponent).')
    if isinstance(field, serializers.IntegerField):
        return None if isinstance(value, int) and not isinstance(value, bool) else _("Expected a whole number.")
    if isinstance(field, serializers.FloatField):
        return None if isinstance(value, int | float) and not isinstance(value, bool) else _("Expected a number.")
    if isinstance(field, serializers.MultipleChoiceField):
        if not isinstance(value, list):
            return _("Expected a list.")
        return next((problem for item in value if (problem := _choice_problem(field, item))), None)
    if isinstance(field, serializers.ChoiceField):
        return _choice_problem(field, value)
    if isinstance(field, TEXT_FIELDS):
        return None if isinstance(value, str) else _("Expected a string.")
    if isinstance(field, serializers.PrimaryKeyRelatedField):
        return None if isinstance(value, int) and not isinstance(value, bool) else _("Expected an id (a whole number).")
    if isinstance(field, serializers.ListField | serializers.ManyRelatedField):
        if not isinstance(value, list):
            return _("Expected a list.")
        child = field.child if isinstance(field, serializers.ListField) else field.child_relation
        return next((problem for item in value if (problem := json_type_problem(child, item))), None)
    if isinstance(field, serializers.DictField):
        if not isinstance(value, dict):
            return _("Expected an object.")
        return next((problem for item in value.values() if (problem := json_type_problem(field.child, item))), None)
    return None  # nested serializers check themselves; JSONField and custom fields take any JSON


def json_kind(value: Any) -> type:
    return str if isinstance(value, str) else int if isinstance(value, int) else type(value)


def _choice_problem(field: serializers.ChoiceField, value: Any) -> str | None:
    # Choices may be enum members (TextChoices): compare the JSON kinds, str or int.
    kinds = {json_kind(choice) for choice in field.choices}
    fits = not kinds or (not isinstance(value, bool) and isinstance(value, tuple(kinds)))
    return None if fits else _("Expected one of: %(choices)s.") % {"choices": ", ".join(map(str, field.choices))}


class StrictJsonTypes:
    """Refuses JSON values whose type is not the field's (see the module docstring)."""

    fields: Any

    def to_internal_value(self, data):
        if isinstance(data, dict) and not isinstance(data, QueryDict):
            errors = {}
            for field in self.fields.values():
                if field.read_only or field.source == "*":
                    continue
                value = data.get(field.field_name, empty)
                if value is empty:
                    continue
                problem = json_type_problem(field, value)
                if problem:
                    errors[field.field_name] = [problem]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)  # type: ignore[misc]


class Serializer(StrictJsonTypes, serializers.Serializer):
    pass


class ModelSerializer(StrictJsonTypes, serializers.ModelSerializer):
    pass
