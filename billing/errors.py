"""Error codes of billing operations (the API returns them as `code`)."""

from __future__ import annotations

from enum import StrEnum

from rest_framework import status

from marketplace.errors import ApplicationError


class BillingErrorCode(StrEnum):
    UNBALANCED_TRANSACTION = "unbalanced_transaction"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    PAYMENT_PROVIDER_ERROR = "payment_provider_error"
    PAYMENTS_NOT_CONFIGURED = "payments_not_configured"
    INVALID_SIGNATURE = "invalid_signature"
    CREDIT_NOTE_TOO_LARGE = "credit_note_too_large"
    SECOND_APPROVER_REQUIRED = "second_approver_required"
    CREDIT_NOTE_DECIDED = "credit_note_decided"
    CREDIT_EXCEEDS_PAID = "credit_exceeds_paid"
    ALREADY_REFUNDED = "already_refunded"


class UnbalancedTransaction(ApplicationError):
    code = BillingErrorCode.UNBALANCED_TRANSACTION
    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR


class InsufficientFunds(ApplicationError):
    code = BillingErrorCode.INSUFFICIENT_FUNDS
    status_code = status.HTTP_402_PAYMENT_REQUIRED


class PaymentProviderError(ApplicationError):
    code = BillingErrorCode.PAYMENT_PROVIDER_ERROR
    status_code = status.HTTP_502_BAD_GATEWAY


class PaymentsNotConfigured(PaymentProviderError):
    """This deployment has no Stripe keys (`stripe_gateway.payments_configured`): nothing was tried."""

    code = BillingErrorCode.PAYMENTS_NOT_CONFIGURED


class CreditNoteTooLarge(ApplicationError):
    """Above the absolute ceiling (CREDIT_NOTE_MAX): no staff member, alone or with a second, may
    grant it; `extra["maximum"]` is the ceiling."""

    code = BillingErrorCode.CREDIT_NOTE_TOO_LARGE
    status_code = status.HTTP_400_BAD_REQUEST


class SecondApproverRequired(ApplicationError):
    """A credit note above the approval threshold is approved by a staff member other than the one
    who requested it (and never by the buyer it credits)."""

    code = BillingErrorCode.SECOND_APPROVER_REQUIRED
    status_code = status.HTTP_403_FORBIDDEN


class CreditNoteDecided(ApplicationError):
    """The credit note request was already approved or rejected."""

    code = BillingErrorCode.CREDIT_NOTE_DECIDED
    status_code = status.HTTP_409_CONFLICT


class CreditExceedsPaid(ApplicationError):
    """A refund or dispute credit above what the buyer paid for the rental (times the SLA multiple
    for a lost host), less what was already given back; `extra["bound"]` is the most allowed now."""

    code = BillingErrorCode.CREDIT_EXCEEDS_PAID
    status_code = status.HTTP_400_BAD_REQUEST


class AlreadyRefunded(ApplicationError):
    """This usage charge was already reversed."""

    code = BillingErrorCode.ALREADY_REFUNDED
    status_code = status.HTTP_409_CONFLICT
