"""`Idempotency-Key` for creating POSTs: the same key and body replay the first success; the same
key with another body is a 409 `idempotency_key_reused`.

The record is written in the same transaction as the effect, so a concurrent duplicate either
waits on the unique key and then replays, or never sees a half-done effect.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar, cast

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from .errors import Conflict, ErrorCode, InvalidInput
from .models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255

_View = TypeVar("_View")
_P = ParamSpec("_P")


def request_fingerprint(request: Request) -> str:
    """A keyed hash (HMAC with SECRET_KEY) of the request: bodies may carry secrets (an order's
    secret environment values), and a plain hash would let whoever reads this table confirm a
    guessed secret offline."""
    body = json.dumps(request.data, sort_keys=True, default=str, separators=(",", ":"))
    message = f"{request.method} {request.path}\n{body}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def _replay(record: IdempotencyRecord, fingerprint: str) -> Response:
    if record.request_fingerprint != fingerprint:
        raise Conflict(
            _("This Idempotency-Key was already used with a different request."),
            code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
        )
    response = Response(record.response_body, status=record.status_code)
    response["Idempotent-Replayed"] = "true"
    return response


def idempotent(
    view_method: Callable[Concatenate[_View, Request, _P], Response],
) -> Callable[Concatenate[_View, Request, _P], Response]:
    """Decorate a DRF view method (POST) that creates something for `request.user`."""

    @functools.wraps(view_method)
    def wrapper(self: _View, request: Request, *args: _P.args, **kwargs: _P.kwargs) -> Response:
        key = request.headers.get(HEADER)
        if key is None or not request.user.is_authenticated:
            return view_method(self, request, *args, **kwargs)
        key = key.strip()
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise InvalidInput(
                _("%(header)s must be 1-%(maximum)s printable characters.")
                % {"header": HEADER, "maximum": MAX_KEY_LENGTH},
                code=ErrorCode.INVALID_IDEMPOTENCY_KEY,
                fields={HEADER: [_("Invalid key.")]},
            )
        fingerprint = request_fingerprint(request)
        existing = IdempotencyRecord.objects.filter(user=request.user, key=key).first()
        if existing is not None:
            return _replay(existing, fingerprint)
        try:
            with transaction.atomic():
                response = view_method(self, request, *args, **kwargs)
                if 200 <= response.status_code < 300:
                    IdempotencyRecord.objects.create(
                        user=request.user,
                        key=key,
                        method=cast(str, request.method),  # always set on a request being served
                        path=request.path[:255],
                        request_fingerprint=fingerprint,
                        status_code=response.status_code,
                        response_body=json.loads(JSONRenderer().render(response.data)),
                    )
                return response
        except IntegrityError:
            # A concurrent request with the same key committed first: ours was rolled back whole.
            existing = IdempotencyRecord.objects.filter(user=request.user, key=key).first()
            if existing is None:
                raise
            return _replay(existing, fingerprint)

    return wrapper
