from rest_framework import authentication, exceptions

from marketplace.api.throttling import credential_refused
from marketplace.errors import ApplicationError

from .errors import AccountErrorCode
from .scopes import Scope, key_allows, required_scopes
from .services import api_key_authenticate
from .views import client_ip


class BearerApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>` with a key from POST /api/v1/auth/keys/ or the account page.

    Refuses an unknown, revoked or expired key (401 `api_key_invalid` / `api_key_revoked` /
    `api_key_expired`) and a request the key's scopes do not cover (403 `insufficient_scope`, naming
    the scope), whatever the view: each view names its area (`accounts.scopes`)."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header:
            return None
        parts = header.split()
        if parts[0].lower() != self.keyword.lower():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: use 'Bearer <key>'.")
        try:
            api_key = api_key_authenticate(key=parts[1], client_ip=client_ip(request._request))
        except ApplicationError as refused:
            credential_refused(request)  # 429 once an address keeps presenting refused keys
            raise exceptions.AuthenticationFailed(refused.detail, code=refused.code) from None
        user = api_key.user
        view = (request.parser_context or {}).get("view")
        needed = required_scopes(view, request.method) if view is not None else None
        if needed is not None and not key_allows(api_key.scopes, needed, user_is_staff=user.is_staff):
            names = " or ".join(sorted(needed)) if "account" not in needed else "every scope of the account"
            raise exceptions.PermissionDenied(
                f"This API key lacks the scope this request needs: {names}.", code=AccountErrorCode.INSUFFICIENT_SCOPE
            )
        if user.is_staff and Scope.STAFF not in api_key.scopes:
            user.withhold_staff_powers()  # this request acts as an ordinary account
        return (user, api_key)

    def authenticate_header(self, request) -> str:
        return self.keyword
