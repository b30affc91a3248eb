"""The offer search language, translated to the API's filters.

    accelerator_model in [h100-80g,a100-80g] num_accelerators>=2 region=eu-west price_per_hour<3 reliability>0.98

Terms are `field operator value`, separated by spaces; values are names or numbers, or `[a,b]`
lists after `in`. Every field and operator either translates to API filters or is an error naming
it: nothing is dropped.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

TERM = re.compile(r"\s*(?P<field>[A-Za-z_]+)\s*(?P<op>>=|<=|!=|==|=|<|>|\bin\b)\s*(?P<value>\[[^\]]*\]|[^\s\[\]<>=!]+)")
PRICE_STEP = Decimal("0.000001")  # prices carry six decimals: `< 3` is `<= 2.999999`
RELIABILITY_STEP = Decimal("0.0001")


class QueryError(ValueError):
    """The query names a field or operator the API cannot filter by, or a malformed value."""


# field -> (kind, API parameters by operator). Aliases name the same field.
NAMES = {
    "model": "accelerator_model",
    "gpu_name": "accelerator_model",
    "accelerators": "num_accelerators",
    "num_gpus": "num_accelerators",
    "price": "price_per_hour",
    "dph": "price_per_hour",
    "kind": "accelerator_kind",
    "memory_gb": "accelerator_memory_gb",
    "gpu_ram": "accelerator_memory_gb",
    "cpu_cores": "vcpus",
    "type": "instance_type",
}
CHOICES = {"accelerator_kind": ("gpu", "dsa", "cpu"), "tier": ("cloud", "edge"), "verified": ("true", "false", "all")}
WHOLE_LOWER = {
    "num_accelerators": "min_accelerators",
    "accelerator_memory_gb": "min_accelerator_memory_gb",
    "vcpus": "min_vcpus",
    "ram_gb": "min_ram_gb",
}
NAMED = {
    "accelerator_model": ("accelerator_model", "accelerator_model__in"),
    "region": ("region", "region__in"),
    "instance_type": ("instance_type", None),
    "accelerator_kind": ("accelerator_kind", None),
    "tier": ("tier", None),
    "verified": ("verified", None),
}
FIELDS = sorted({*WHOLE_LOWER, *NAMED, "price_per_hour", "reliability"})


def parse_query(text: str) -> dict[str, str]:
    """The API query parameters for a query; QueryError names what cannot be translated."""
    params: dict[str, str] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = TERM.match(text, position)
        if match is None:
            rest = text[position:].strip()
            raise QueryError(f"Cannot read {rest.split()[0]!r}: terms are `field operator value`, e.g. region=eu-west.")
        field, op, value = match["field"].lower(), match["op"], match["value"]
        position = match.end()
        if position < len(text) and not text[position].isspace():
            raise QueryError(f"Cannot read {text[match.start() :].split()[0]!r}: separate terms with spaces.")
        for name, param in _translate(NAMES.get(field, field), op, value).items():
            if name in params and params[name] != param:
                raise QueryError(f"{field} is given twice with different values.")
            params[name] = param
    return params


def _translate(field: str, op: str, value: str) -> dict[str, str]:
    if field not in FIELDS:
        raise QueryError(f"Unknown field {field!r}: use one of {', '.join(FIELDS)}.")
    if field in WHOLE_LOWER:
        number = _whole(field, value)
        lower, upper = WHOLE_LOWER[field], "max_accelerators" if field == "num_accelerators" else None
        if op == ">=":
            return {lower: str(number)}
        if op == ">":
            return {lower: str(number + 1)}
        if upper and op in ("=", "=="):
            return {lower: str(number), upper: str(number)}
        if upper and op == "<=":
            return {upper: str(number)}
        if upper and op == "<":
            return {upper: str(number - 1)}
        raise _operator(field, op, ">=, >" + (", =, <=, <" if upper else ""))
    if field == "price_per_hour":
        price = _decimal(field, value)
        if op == "<=":
            return {"max_price_per_hour": str(price)}
        if op == "<":
            if price <= 0:
                raise QueryError(f"{field}<{value} matches nothing: prices are above 0.")
            return {"max_price_per_hour": str(price - PRICE_STEP)}
        raise _operator(field, op, "<=, <")
    if field == "reliability":
        reliability = _decimal(field, value)
        if op == ">=":
            return {"min_reliability": str(reliability)}
        if op == ">":
            return {"min_reliability": str(reliability + RELIABILITY_STEP)}
        raise _operator(field, op, ">=, >")
    single, listed = NAMED[field]
    if op == "in":
        if listed is None:
            raise _operator(field, op, "=")
        if not (value.startswith("[") and value.endswith("]")):
            raise QueryError(f"{field} in takes a list: {field} in [a,b].")
        names = [name.strip() for name in value[1:-1].split(",") if name.strip()]
        if not names:
            raise QueryError(f"{field} in [] names nothing.")
        return {listed: ",".join(names)}
    if op not in ("=", "=="):
        raise _operator(field, op, "=, in" if listed else "=")
    if value.startswith("["):
        raise QueryError(f"{field}={value}: a list needs `in`.")
    if field in CHOICES and value.lower() not in CHOICES[field]:
        raise QueryError(f"{field} must be one of {', '.join(CHOICES[field])}, not {value!r}.")
    return {single: value.lower() if field in CHOICES else value}


def _operator(field: str, op: str, allowed: str) -> QueryError:
    return QueryError(f"Operator {op!r} is not supported for {field}: use {allowed}.")


def _whole(field: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise QueryError(f"{field} takes a whole number, not {value!r}.")
    return int(value)


def _decimal(field: str, value: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise QueryError(f"{field} takes a number, not {value!r}.") from None
    if not number.is_finite() or number < 0:
        raise QueryError(f"{field} takes a number, not {value!r}.")
    return number
