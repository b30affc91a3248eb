"""Error codes of billing operations (the API returns them as `code`)."""

from __future__ import annotations

from enum import StrEnum

from rest_framework import status

from marketplace.errors import ApplicationError


class BillingErrorCode(StrEnum):
    UNBALANCED_TRANSACTION = "unbalanced_transaction"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    PAYMENT_PROVIDER_ERROR = "payment_provider_error"
    INVALID_SIGNATURE = "invalid_signature"


class UnbalancedTransaction(ApplicationError):
    code = BillingErrorCode.UNBALANCED_TRANSACTION
    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR


class InsufficientFunds(ApplicationError):
    code = BillingErrorCode.INSUFFICIENT_FUNDS
    status_code = status.HTTP_402_PAYMENT_REQUIRED


class PaymentProviderError(ApplicationError):
    code = BillingErrorCode.PAYMENT_PROVIDER_ERROR
    status_code = status.HTTP_502_BAD_GATEWAY
