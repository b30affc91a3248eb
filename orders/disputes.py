"""Problem reports and disputes: buyer reports, supplier answers, staff resolve with evidence.

The text of each (description, answer, reason) is bounded by its column's max_length and holds no
control characters but newlines and tabs: a field error (400), never a database error. A dispute
credit is bounded by what the buyer paid for the rental (times SLA_CREDIT_MULTIPLE for a lost host)
less what was already given back for it (`credit_exceeds_paid`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Field, Q, QuerySet
from django.http import Http404
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.scopes import Scope
from accounts.services import notify
from billing.errors import CreditExceedsPaid
from billing.ledger import buyer_wallet, lock_wallet, post_transaction, supplier_payable
from billing.models import LedgerTransaction
from billing.selectors import RentalPayments, rental_payments
from marketplace.audit import audit_record
from marketplace.currency import money_text
from marketplace.errors import Conflict, Forbidden, InvalidInput
from marketplace.models import clean_text
from marketplace.money import CENT
from suppliers.selectors import member_may

from .errors import OrderErrorCode
from .locks import problem_report_lock
from .models import Instance, InstanceStatus, ProblemReport

OPEN_STATUSES = (ProblemReport.Status.OPEN, ProblemReport.Status.ANSWERED)


def _max_length(name: str) -> int:
    field = ProblemReport._meta.get_field(name)
    if not (isinstance(field, Field) and field.max_length):
        raise TypeError(f"ProblemReport.{name} has no max_length")
    return field.max_length


DESCRIPTION_MAX_LENGTH = _max_length("description")  # 4000
ANSWER_MAX_LENGTH = _max_length("supplier_answer")  # 4000
REASON_MAX_LENGTH = _max_length("resolution_reason")  # 2000


def _text(value: str | None, *, field: str, max_length: int, required: str, errors: dict[str, list[str]]) -> str:
    """The text as stored (line breaks normalized, trimmed), or its problem added to `errors`."""
    try:
        text = clean_text(value, max_length=max_length)
    except ValidationError as error:
        errors[field] = list(error.messages)
        return ""
    if not text:
        errors[field] = [required]
    return text


def _text_or_invalid(value: str | None, *, field: str, max_length: int, required: str, detail: str) -> str:
    errors: dict[str, list[str]] = {}
    text = _text(value, field=field, max_length=max_length, required=required, errors=errors)
    if errors:
        raise InvalidInput(detail, fields=errors)
    return text


def report_list_for_user(*, user: User) -> QuerySet[ProblemReport]:
    """Staff: all; suppliers: reports on their hosts; buyers: their own."""
    queryset = ProblemReport.objects.select_related("instance", "instance__host", "buyer")
    if user.is_staff:
        return queryset
    return queryset.filter(Q(buyer=user) | Q(instance__host__organization__memberships__user=user)).distinct()


def reports_open_for_organization(*, organization_id: int, limit: int = 50) -> list[ProblemReport]:
    """A supplier's open reports (to answer), oldest first."""
    queryset = ProblemReport.objects.select_related("instance", "instance__host").filter(
        instance__host__organization_id=organization_id, status__in=OPEN_STATUSES
    )
    return list(queryset.order_by("created_at", "id")[:limit])


def report_get_for_user(*, user: User, report_id: int | str) -> ProblemReport:
    try:
        return report_list_for_user(user=user).get(pk=int(report_id))
    except (ProblemReport.DoesNotExist, ValueError, TypeError):
        raise Http404("No such report.") from None


@transaction.atomic
def report_create(*, buyer: User, instance: Instance, category: str, description: str) -> ProblemReport:
    if instance.buyer_id != buyer.pk:
        raise Http404("No such instance.")
    errors: dict[str, list[str]] = {}
    if category not in ProblemReport.Category.values:
        errors["category"] = [_("One of %(choices)s.") % {"choices": ", ".join(ProblemReport.Category.values)}]
    description = _text(
        description,
        field="description",
        max_length=DESCRIPTION_MAX_LENGTH,
        required=_("Tell us what happened."),
        errors=errors,
    )
    if errors:
        raise InvalidInput(_("The report is not complete."), fields=errors)
    report = ProblemReport.objects.create(instance=instance, buyer=buyer, category=category, description=description)
    for membership in instance.host.organization.memberships.select_related("user"):
        notify(
            user=membership.user,
            kind="problem_report",
            title=_("Problem reported on i-%(id)s") % {"id": instance.pk},
            body=f"{report.get_category_display()}: {report.description[:300]}",
            link=reverse("orders:report_detail", args=[report.pk]),
        )
    return report


@transaction.atomic
def report_answer(*, user: User, report: ProblemReport, answer: str) -> ProblemReport:
    report = problem_report_lock(report_id=report.pk)
    if not member_may(user=user, organization_id=report.instance.host.organization_id, area=Scope.SUPPLIER, write=True):
        raise Forbidden(_("Only the supplier (a role that changes hosts) answers a report."))
    if report.status not in OPEN_STATUSES:
        raise Conflict(_("This report is resolved."), code=OrderErrorCode.REPORT_RESOLVED)
    report.supplier_answer = _text_or_invalid(
        answer,
        field="answer",
        max_length=ANSWER_MAX_LENGTH,
        required=_("Required."),
        detail=_("An answer cannot be empty."),
    )
    report.answered_at = timezone.now()
    report.status = ProblemReport.Status.ANSWERED
    report.save(update_fields=["supplier_answer", "answered_at", "status"])
    notify(
        user=report.buyer,
        kind="problem_report",
        title=_("The supplier answered your report on i-%(id)s") % {"id": report.instance_id},
        body=report.supplier_answer[:500],
        link=reverse("orders:report_detail", args=[report.pk]),
    )
    return report


def report_rental_payments(*, report: ProblemReport) -> RentalPayments:
    """What the buyer paid for the reported rental and what was already given back for it."""
    instance = report.instance
    return rental_payments(
        buyer=report.buyer,
        instance_id=instance.pk,
        order_id=instance.order_id,
        price_per_hour=instance.price_per_hour,
        term_hours=instance.order.term_hours,
        report_ids=instance.problem_reports.values_list("pk", flat=True),
    )


def report_credit_multiple(report: ProblemReport) -> Decimal:
    """A lost host may earn up to SLA_CREDIT_MULTIPLE times what was paid (the SLA rule); else 1x."""
    if report.category == ProblemReport.Category.HOST_LOST:
        return Decimal(settings.SLA_CREDIT_MULTIPLE)
    return Decimal(1)


@transaction.atomic
def report_resolve(*, staff: User, report: ProblemReport, credit: Decimal | None, reason: str) -> ProblemReport:
    """Staff resolve: a credit (charged to the supplier's payable) or a rejection, with a reason.

    The credit is at most what the buyer paid for this rental (usage charges and its reserved
    prepayment), times SLA_CREDIT_MULTIPLE when the host was lost, less what was already given back
    for it; above that: `credit_exceeds_paid` with the bound in `extra`. Decided under the buyer's
    wallet lock, so two resolutions (or a refund) on one rental cannot both fit. The supplier's
    payable may go negative: it then owes, and repays from later earnings before any payout."""
    if not staff.is_staff:
        raise Forbidden(_("Only staff resolve reports."))
    reason = _text_or_invalid(
        reason,
        field="reason",
        max_length=REASON_MAX_LENGTH,
        required=_("Required."),
        detail=_("A resolution needs a reason."),
    )
    report = problem_report_lock(report_id=report.pk)
    if report.status not in OPEN_STATUSES:
        raise Conflict(_("This report is already resolved."), code=OrderErrorCode.REPORT_RESOLVED)
    if report.buyer_id == staff.pk:
        raise Forbidden(_("Staff do not resolve a report on their own rental."))
    if credit is not None and (credit <= 0 or credit != credit.quantize(CENT)):
        raise InvalidInput(
            _("A credit is a positive amount in whole cents."), fields={"credit": [_("Invalid amount.")]}
        )
    if credit:
        lock_wallet(report.buyer)
        payments = report_rental_payments(report=report)
        multiple = report_credit_multiple(report)
        if credit > payments.room(multiple):
            bound = payments.bound(multiple)
            raise CreditExceedsPaid(
                (
                    _(
                        "A credit for this rental is at most %(bound)s: the buyer paid %(paid)s (x%(multiple)s for "
                        "a lost host) and %(credited)s was already given back."
                    )
                    if multiple != 1
                    else _(
                        "A credit for this rental is at most %(bound)s: the buyer paid %(paid)s and %(credited)s was "
                        "already given back."
                    )
                )
                % {
                    "bound": money_text(bound),
                    "paid": money_text(payments.paid),
                    "multiple": multiple,
                    "credited": money_text(payments.credited),
                },
                fields={"credit": [_("At most %(maximum)s.") % {"maximum": money_text(bound)}]},
                extra={
                    "bound": str(bound),
                    "paid": str(payments.paid),
                    "credited": str(payments.credited),
                    "multiple": str(multiple),
                },
            )
        post_transaction(
            kind=LedgerTransaction.Kind.REFUND,
            key=f"dispute:{report.pk}",
            created_by=staff,
            description=f"Dispute {report.pk} on i-{report.instance_id}: {reason}"[:255],
            postings=[
                (supplier_payable(report.instance.host.organization), -credit),
                (buyer_wallet(report.buyer), credit),
            ],
            reference={"problem_report": report.pk, "instance": report.instance_id},
        )
    report.status = ProblemReport.Status.REFUNDED if credit else ProblemReport.Status.REJECTED
    report.credit_amount = credit
    report.resolution_reason = reason
    report.resolved_by = staff
    report.resolved_at = timezone.now()
    report.save(update_fields=["status", "credit_amount", "resolution_reason", "resolved_by", "resolved_at"])
    audit_record(
        action=f"dispute.{report.status}",
        obj=report,
        actor=staff,
        reason=reason,
        after={"credit": str(credit) if credit else None},
    )
    notify(
        user=report.buyer,
        kind="problem_report",
        title=(
            _("Your report on i-%(id)s was resolved with a credit")
            if report.status == ProblemReport.Status.REFUNDED
            else _("Your report on i-%(id)s was rejected")
        )
        % {"id": report.instance_id},
        body=reason,
        link=reverse("orders:report_detail", args=[report.pk]),
    )
    return report


def report_evidence(*, report: ProblemReport) -> dict[str, list[Any]]:
    """What staff see: the instance timeline, heartbeat gaps on its host during its life, usage."""
    instance = report.instance
    end = instance.updated_at if instance.status == InstanceStatus.TERMINATED else timezone.now()
    outages = instance.host.outages.filter(started_at__lte=end).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gte=instance.created_at)
    )
    return {
        "events": list(instance.events.all()),
        "outages": list(outages),
        "usage": list(instance.usage_records.order_by("window_start")[:200]),
    }
