"""Error codes of account operations (the API returns them as `code`)."""

from __future__ import annotations

from enum import StrEnum

from rest_framework import status

from marketplace.errors import ApplicationError


class AccountErrorCode(StrEnum):
    EMAIL_TAKEN = "email_taken"
    INVALID_CREDENTIALS = "invalid_credentials"
    ALREADY_SUSPENDED = "already_suspended"


class InvalidCredentials(ApplicationError):
    code = AccountErrorCode.INVALID_CREDENTIALS
    status_code = status.HTTP_401_UNAUTHORIZED
