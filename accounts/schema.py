from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.BearerApiKeyAuthentication"
    name = "apiKeyBearer"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from POST /api/v1/auth/keys/, sent as `Authorization: Bearer <key>`.",
        }


class TeamSessionScheme(SessionScheme):
    """The browser session (acting for a team with what the person's role allows)."""

    target_class = "accounts.authentication.SessionAuthentication"
