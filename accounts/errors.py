"""Error codes of account operations (the API returns them as `code`)."""

from __future__ import annotations

from enum import StrEnum

from django.utils.translation import ngettext
from rest_framework import status

from marketplace.errors import ApplicationError


class AccountErrorCode(StrEnum):
    EMAIL_TAKEN = "email_taken"
    INVALID_CREDENTIALS = "invalid_credentials"
    ALREADY_SUSPENDED = "already_suspended"
    LOGIN_LOCKED = "login_locked"
    INVALID_SSH_KEY = "invalid_ssh_key"
    SSH_KEY_EXISTS = "ssh_key_exists"
    API_KEY_INVALID = "api_key_invalid"
    API_KEY_REVOKED = "api_key_revoked"
    API_KEY_EXPIRED = "api_key_expired"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    ROLE_FORBIDS = "role_forbids"
    INVITATION_INVALID = "invitation_invalid"
    INVITATION_CLOSED = "invitation_closed"
    INVITATION_FOR_ANOTHER_EMAIL = "invitation_for_another_email"
    ALREADY_MEMBER = "already_member"
    LAST_OWNER = "last_owner"
    NOT_A_MEMBER = "not_a_member"


class InvalidCredentials(ApplicationError):
    code = AccountErrorCode.INVALID_CREDENTIALS
    status_code = status.HTTP_401_UNAUTHORIZED


class ApiKeyRefused(ApplicationError):
    """The bearer key is unknown (`api_key_invalid`), revoked (`api_key_revoked`) or expired
    (`api_key_expired`): 401, whatever the request."""

    code = AccountErrorCode.API_KEY_INVALID
    status_code = status.HTTP_401_UNAUTHORIZED


class InvalidSshKey(ApplicationError):
    """Not an OpenSSH public key line the platform accepts (a private key, a weak or unknown type)."""

    code = AccountErrorCode.INVALID_SSH_KEY
    status_code = status.HTTP_400_BAD_REQUEST


class SshKeyExists(ApplicationError):
    code = AccountErrorCode.SSH_KEY_EXISTS
    status_code = status.HTTP_409_CONFLICT


class LoginLocked(ApplicationError):
    """Too many failed logins for this account or from this address; the lock lifts by itself."""

    code = AccountErrorCode.LOGIN_LOCKED
    status_code = status.HTTP_429_TOO_MANY_REQUESTS


def login_locked_detail(*, lockout_seconds: int) -> str:
    """What a locked-out person is told, on the page and in the API. It does not say whether the account
    or the address is locked, nor whether the account exists."""
    minutes = max(1, -(-lockout_seconds // 60))
    return ngettext(
        "Too many failed logins for this account or from your address. "
        "Logging in is paused for up to %(minutes)s minute; try again later.",
        "Too many failed logins for this account or from your address. "
        "Logging in is paused for up to %(minutes)s minutes; try again later.",
        minutes,
    ) % {"minutes": minutes}
