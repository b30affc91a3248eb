"""Staff adjustments: credit notes for buyers and refunds of usage charges, each with a reason.

Every staff money action is bounded:

- a credit note above CREDIT_NOTE_MAX is refused (`credit_note_too_large`);
- a credit note above CREDIT_NOTE_APPROVAL_ABOVE is only requested: a pending `CreditNoteRequest`,
  nothing posted, until a second staff member approves it (the requester never can:
  `second_approver_required`) or someone rejects it with a reason. The threshold is a rolling one:
  what the same staff member credited alone in the last CREDIT_NOTE_APPROVAL_WINDOW counts, so ten
  notes of $99 are not a way around one of $990;
- a usage refund reverses one settled usage record's charge that the buyer's wallet paid, once
  (`already_refunded`), and never more than the buyer paid for that rental less what was already
  given back for it (`credit_exceeds_paid`);
- no staff member credits or refunds their own account.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.locks import user_lock
from accounts.models import User
from accounts.services import notify
from marketplace.audit import audit_record
from marketplace.currency import money_text
from marketplace.errors import Forbidden, InvalidInput
from marketplace.models import clean_text
from marketplace.money import CENT

from .errors import AlreadyRefunded, CreditExceedsPaid, CreditNoteDecided, CreditNoteTooLarge, SecondApproverRequired
from .ledger import Kind, buyer_wallet, lock_wallet, owner_accounts, platform_account, post_transaction
from .locks import credit_note_request_lock
from .models import CREDIT_NOTE_CEILING, CreditNoteRequest, LedgerAccount, LedgerTransaction, UsageRecord
from .rating import charge_for, split
from .selectors import credited_alone_recently, rental_payments
from .settlement import earner_owner, paid_from_wallet, usage_payer_facts

REASON_MAX_LENGTH = 2000


def staff_reason(reason: str | None, *, missing: str, field: str = "reason") -> str:
    """A staff member's reason as stored: required (`missing` says so when it is not given), at most
    2000 characters, no control characters."""
    try:
        text = clean_text(reason, max_length=REASON_MAX_LENGTH)
    except ValidationError as error:
        raise InvalidInput(error.messages[0], fields={field: error.messages}) from None
    if not text:
        raise InvalidInput(missing, fields={field: [_("Required.")]})
    return text


def credit_note_maximum() -> Decimal:
    """The absolute ceiling of one credit note: CREDIT_NOTE_MAX, never above the database's bound."""
    return min(Decimal(settings.CREDIT_NOTE_MAX), CREDIT_NOTE_CEILING)


def _check_amount(amount: Decimal | None) -> Decimal:
    if amount is None or amount <= 0 or amount != amount.quantize(CENT):
        raise InvalidInput(_("A positive amount in whole cents."), fields={"amount": [_("Invalid amount.")]})
    maximum = credit_note_maximum()
    if amount > maximum:
        raise CreditNoteTooLarge(
            _("A credit note is at most %(maximum)s.") % {"maximum": money_text(maximum)},
            fields={"amount": [_("At most %(maximum)s.") % {"maximum": money_text(maximum)}]},
            extra={"maximum": str(maximum)},
        )
    return amount


def _check_staff(staff: User, *, buyer_id: int, refused: str) -> None:
    """`refused`: what a non-staff account is told."""
    if not staff.is_staff:
        raise Forbidden(refused)
    if staff.pk == buyer_id:
        raise Forbidden(_("Staff do not credit or refund their own account."))


def _credit_note_decided(request: CreditNoteRequest) -> str:
    if request.status == CreditNoteRequest.Status.APPROVED:
        return _("This credit note was already approved.")
    return _("This credit note was already rejected.")


def credit_note_issue(
    *, user: User, amount: Decimal | None, reason: str, staff: User
) -> LedgerTransaction | CreditNoteRequest:
    """Staff credit a buyer (goodwill, SLA): credits expense -> wallet, with the reason on record.

    Up to CREDIT_NOTE_APPROVAL_ABOVE the credit is posted at once (the LedgerTransaction is
    returned). Above it, a pending CreditNoteRequest is returned and nothing is posted until a
    second staff member approves it (`credit_note_approve`). Above CREDIT_NOTE_MAX: refused."""
    _check_staff(staff, buyer_id=user.pk, refused=_("Only staff issue credit notes."))
    reason = staff_reason(reason, missing=_("A credit note needs a reason."))
    amount = _check_amount(amount)
    with transaction.atomic():
        # The staff member's row serializes their own credit notes, so two at once cannot both
        # stay under the rolling threshold.
        user_lock(user_id=staff.pk)
        if amount + credited_alone_recently(staff) > Decimal(settings.CREDIT_NOTE_APPROVAL_ABOVE):
            request = CreditNoteRequest.objects.create(user=user, amount=amount, reason=reason, requested_by=staff)
            audit_record(
                action="credit_note.requested",
                obj=request,
                actor=staff,
                reason=reason,
                after={"user": user.pk, "amount": str(amount), "requested_by": staff.pk, "status": request.status},
            )
            return request
        ledger_transaction = post_transaction(
            kind=LedgerTransaction.Kind.CREDIT,
            key=f"credit-note:{uuid.uuid4()}",
            description=f"Credit note: {reason}"[:255],
            created_by=staff,
            postings=[(platform_account(Kind.CREDITS_EXPENSE), -amount), (buyer_wallet(user), amount)],
            reference={"user": user.pk, "reason": reason},
        )
        notify(
            user=user,
            kind="credit_note",
            title=_("You received a %(amount)s credit") % {"amount": money_text(amount)},
            body=reason,
            link=reverse("billing:buyer"),
        )
    return ledger_transaction


@transaction.atomic
def credit_note_approve(*, request_id: int, staff: User) -> CreditNoteRequest:
    """A second staff member approves a pending credit note: the credit is posted (key
    `credit-note-request:<id>`) with both staff members named in the ledger reference and the
    audit log. The requester (and the credited buyer) cannot approve it."""
    request = credit_note_request_lock(request_id=request_id)
    _check_staff(staff, buyer_id=request.user_id, refused=_("Only staff approve credit notes."))
    if request.status != CreditNoteRequest.Status.PENDING:
        raise CreditNoteDecided(_credit_note_decided(request))
    if request.requested_by_id == staff.pk:
        raise SecondApproverRequired(_("Another staff member must approve a credit note you requested."))
    maximum = credit_note_maximum()
    if request.amount > maximum:  # the ceiling was lowered since the request
        raise CreditNoteTooLarge(
            _("A credit note is at most %(maximum)s.") % {"maximum": money_text(maximum)},
            extra={"maximum": str(maximum)},
        )
    requester = User.objects.get(pk=request.requested_by_id)
    ledger_transaction = post_transaction(
        kind=LedgerTransaction.Kind.CREDIT,
        key=f"credit-note-request:{request.pk}",
        description=f"Credit note: {request.reason}"[:255],
        created_by=staff,
        postings=[
            (platform_account(Kind.CREDITS_EXPENSE), -request.amount),
            (buyer_wallet(request.user), request.amount),
        ],
        reference={
            "user": request.user_id,
            "reason": request.reason,
            "credit_note_request": request.pk,
            "requested_by": requester.pk,
            "requested_by_email": requester.email,
            "approved_by": staff.pk,
            "approved_by_email": staff.email,
        },
    )
    request.status = CreditNoteRequest.Status.APPROVED
    request.decided_by = staff
    request.decided_at = timezone.now()
    request.ledger_transaction = ledger_transaction
    request.save(update_fields=["status", "decided_by", "decided_at", "ledger_transaction"])
    audit_record(
        action="credit_note.approved",
        obj=request,
        actor=staff,
        reason=request.reason,
        before={"status": CreditNoteRequest.Status.PENDING},
        after={
            "status": request.status,
            "user": request.user_id,
            "amount": str(request.amount),
            "requested_by": requester.pk,
            "approved_by": staff.pk,
            "ledger_transaction": ledger_transaction.pk,
        },
    )
    notify(
        user=request.user,
        kind="credit_note",
        title=_("You received a %(amount)s credit") % {"amount": money_text(request.amount)},
        body=request.reason,
        link=reverse("billing:buyer"),
    )
    return request


@transaction.atomic
def credit_note_reject(*, request_id: int, staff: User, reason: str) -> CreditNoteRequest:
    """Staff reject a pending credit note with a reason; nothing is posted. The requester may
    withdraw their own request this way."""
    if not staff.is_staff:
        raise Forbidden(_("Only staff reject credit notes."))
    reason = staff_reason(reason, missing=_("A rejection needs a reason."))
    request = credit_note_request_lock(request_id=request_id)
    if request.status != CreditNoteRequest.Status.PENDING:
        raise CreditNoteDecided(_credit_note_decided(request))
    request.status = CreditNoteRequest.Status.REJECTED
    request.decided_by = staff
    request.decided_at = timezone.now()
    request.decision_reason = reason
    request.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
    audit_record(
        action="credit_note.rejected",
        obj=request,
        actor=staff,
        reason=reason,
        before={"status": CreditNoteRequest.Status.PENDING},
        after={"status": request.status, "requested_by": request.requested_by_id, "rejected_by": staff.pk},
    )
    return request


def usage_refund(*, record: UsageRecord, reason: str, staff: User) -> LedgerTransaction:
    """Staff refund one usage record's charge by reversing exactly what settling it posted (the
    wallet gets the charge back, the earner gives its share back, the platform its fee).

    Only a settled record that the buyer's wallet paid (a reserved term is refunded pro rata by
    terminating the instance), once (`reversal:usage:<id>`: a second try is `already_refunded`), and
    only while what the buyer paid for that rental, less what was already given back for it
    (disputes, SLA credits, other refunds), covers it (`credit_exceeds_paid`). Decided under the
    buyer's wallet lock, so a concurrent dispute credit or refund cannot both fit."""
    if not staff.is_staff:
        raise Forbidden(_("Only staff refund charges."))
    reason = staff_reason(reason, missing=_("A refund needs a reason."))
    record = UsageRecord.objects.select_related("buyer", "instance", "instance__order", "instance__backfills").get(
        pk=record.pk
    )
    payers = usage_payer_facts(record)
    if record.settled_by_id is None:
        raise InvalidInput(
            _("Only a settled usage charge is refunded this way."), fields={"usage_record": [_("Not settled yet.")]}
        )
    if not paid_from_wallet(payers):
        raise InvalidInput(
            _(
                "The buyer's wallet did not pay this charge (reserved usage comes from the prepaid term; it is "
                "refunded by terminating the instance)."
            ),
            fields={"usage_record": [_("Not paid from the buyer's wallet.")]},
        )
    _check_staff(staff, buyer_id=record.buyer_id, refused=_("Only staff refund charges."))
    parts = split(charge_for(record.seconds, record.rate_per_hour), Decimal(settings.PLATFORM_TAKE_RATE))
    with transaction.atomic():
        wallet = lock_wallet(record.buyer)
        # Before usage was settled in batches, a record had its own transaction, reversed as `reversal:<id>`.
        keys = [f"reversal:usage:{record.pk}", f"reversal:{record.settled_by_id}"]
        if LedgerTransaction.objects.filter(key__in=keys).exists():
            raise AlreadyRefunded(
                _("Usage record %(id)s was already refunded.") % {"id": record.pk},
                fields={"usage_record": [_("Already refunded.")]},
            )
        instance = record.instance
        payments = rental_payments(
            buyer=record.buyer,
            instance_id=instance.pk,
            order_id=instance.order_id,
            price_per_hour=instance.price_per_hour,
            term_hours=instance.order.term_hours,
            report_ids=instance.problem_reports.values_list("pk", flat=True),
        )
        if parts.charge > payments.room():
            raise CreditExceedsPaid(
                _(
                    "Refunding %(charge)s would give back more than the buyer paid for i-%(instance)s (%(paid)s, "
                    "of which %(credited)s was already given back)."
                )
                % {
                    "charge": money_text(parts.charge, 6),
                    "instance": instance.pk,
                    "paid": money_text(payments.paid),
                    "credited": money_text(payments.credited),
                },
                fields={
                    "usage_record": [
                        _("At most %(room)s can still be given back for this rental.")
                        % {"room": money_text(payments.room())}
                    ]
                },
                extra={"bound": str(payments.room()), "paid": str(payments.paid), "credited": str(payments.credited)},
            )
        earner_kind, earner_id = earner_owner(payers)
        earner = owner_accounts(earner_kind, [earner_id])[earner_id]
        totals: dict[int, tuple[LedgerAccount, Decimal]] = {}
        for account, amount in (
            (wallet, parts.charge),
            (earner, -parts.supplier_share),
            (platform_account(Kind.PLATFORM_REVENUE), -parts.fee),
        ):
            held, total = totals.get(account.pk, (account, Decimal(0)))
            totals[account.pk] = (held, total + amount)
        return post_transaction(
            kind=LedgerTransaction.Kind.REFUND,
            key=keys[0],
            description=f"Refund of usage record {record.pk} ({record.kind} i-{instance.pk}, {record.seconds} s): "
            f"{reason}"[:255],
            created_by=staff,
            postings=[(account, amount) for account, amount in totals.values() if amount],
            reference={"reverses_usage_record": record.pk, "instance": instance.pk, "reason": reason},
        )
