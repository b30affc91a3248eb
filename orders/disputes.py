"""Problem reports and disputes: buyer reports, supplier answers, staff resolve with evidence."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone

from accounts.models import User
from accounts.services import notify
from billing.ledger import buyer_wallet, post_transaction, supplier_payable
from billing.models import LedgerTransaction
from marketplace.audit import audit_record
from marketplace.errors import Conflict, Forbidden, InvalidInput

from .errors import OrderErrorCode
from .locks import problem_report_lock
from .models import Instance, InstanceStatus, ProblemReport

OPEN_STATUSES = (ProblemReport.Status.OPEN, ProblemReport.Status.ANSWERED)


def report_list_for_user(*, user: User) -> QuerySet[ProblemReport]:
    """Staff: all; suppliers: reports on their hosts; buyers: their own."""
    queryset = ProblemReport.objects.select_related("instance", "instance__host", "buyer")
    if user.is_staff:
        return queryset
    return queryset.filter(Q(buyer=user) | Q(instance__host__organization__memberships__user=user)).distinct()


def report_get_for_user(*, user: User, report_id: int | str) -> ProblemReport:
    try:
        return report_list_for_user(user=user).get(pk=int(report_id))
    except (ProblemReport.DoesNotExist, ValueError, TypeError):
        raise Http404("No such report.") from None


@transaction.atomic
def report_create(*, buyer: User, instance: Instance, category: str, description: str) -> ProblemReport:
    if instance.buyer_id != buyer.pk:
        raise Http404("No such instance.")
    errors = {}
    if category not in ProblemReport.Category.values:
        errors["category"] = [f"One of {', '.join(ProblemReport.Category.values)}."]
    if not (description or "").strip():
        errors["description"] = ["Tell us what happened."]
    if errors:
        raise InvalidInput("The report is not complete.", fields=errors)
    report = ProblemReport.objects.create(
        instance=instance, buyer=buyer, category=category, description=description.strip()
    )
    for membership in instance.host.organization.memberships.select_related("user"):
        notify(
            user=membership.user,
            kind="problem_report",
            title=f"Problem reported on i-{instance.pk}",
            body=f"{report.get_category_display()}: {report.description[:300]}",
        )
    return report


@transaction.atomic
def report_answer(*, user: User, report: ProblemReport, answer: str) -> ProblemReport:
    report = problem_report_lock(report_id=report.pk)
    if not report.instance.host.organization.memberships.filter(user=user).exists():
        raise Forbidden("Only the supplier answers a report.")
    if report.status not in OPEN_STATUSES:
        raise Conflict("This report is resolved.", code=OrderErrorCode.REPORT_RESOLVED)
    if not (answer or "").strip():
        raise InvalidInput("An answer cannot be empty.", fields={"answer": ["Required."]})
    report.supplier_answer = answer.strip()
    report.answered_at = timezone.now()
    report.status = ProblemReport.Status.ANSWERED
    report.save(update_fields=["supplier_answer", "answered_at", "status"])
    notify(
        user=report.buyer,
        kind="problem_report",
        title=f"The supplier answered your report on i-{report.instance_id}",
        body=report.supplier_answer[:500],
    )
    return report


@transaction.atomic
def report_resolve(*, staff: User, report: ProblemReport, credit: Decimal | None, reason: str) -> ProblemReport:
    """Staff resolve: a credit (charged to the supplier's payable) or a rejection, with a reason."""
    if not staff.is_staff:
        raise Forbidden("Only staff resolve reports.")
    if not (reason or "").strip():
        raise InvalidInput("A resolution needs a reason.", fields={"reason": ["Required."]})
    report = problem_report_lock(report_id=report.pk)
    if report.status not in OPEN_STATUSES:
        raise Conflict("This report is already resolved.", code=OrderErrorCode.REPORT_RESOLVED)
    if credit is not None and (credit <= 0 or credit != credit.quantize(Decimal("0.01"))):
        raise InvalidInput("A credit is a positive amount in whole cents.", fields={"credit": ["Invalid amount."]})
    if credit:
        post_transaction(
            kind=LedgerTransaction.Kind.REFUND,
            key=f"dispute:{report.pk}",
            created_by=staff,
            description=f"Dispute {report.pk} on i-{report.instance_id}: {reason.strip()}"[:255],
            postings=[
                (supplier_payable(report.instance.host.organization), -credit),
                (buyer_wallet(report.buyer), credit),
            ],
            reference={"problem_report": report.pk},
        )
    report.status = ProblemReport.Status.REFUNDED if credit else ProblemReport.Status.REJECTED
    report.credit_amount = credit
    report.resolution_reason = reason.strip()
    report.resolved_by = staff
    report.resolved_at = timezone.now()
    report.save(update_fields=["status", "credit_amount", "resolution_reason", "resolved_by", "resolved_at"])
    audit_record(
        action=f"dispute.{report.status}",
        obj=report,
        actor=staff,
        reason=reason.strip(),
        after={"credit": str(credit) if credit else None},
    )
    notify(
        user=report.buyer,
        kind="problem_report",
        title=f"Your report on i-{report.instance_id} was {report.get_status_display().lower()}",
        body=reason.strip(),
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
