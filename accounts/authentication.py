from rest_framework import authentication, exceptions

from .services import api_key_authenticate


class BearerApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>` with a key from POST /api/v1/auth/keys/."""

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
        api_key = api_key_authenticate(key=parts[1])
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return (api_key.user, api_key)

    def authenticate_header(self, request) -> str:
        return self.keyword
