from decimal import Decimal

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from billing.errors import UnbalancedTransaction
from billing.ledger import buyer_wallet, check_balanced, platform_account, post_transaction
from billing.models import LedgerAccount, LedgerPosting, LedgerTransaction
from billing.selectors import account_balance, ledger_total

pytestmark = pytest.mark.django_db

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="database triggers are PostgreSQL's")


def test_balanced_transactions_are_posted_once(buyer):
    wallet = buyer_wallet(buyer)
    before = account_balance(wallet)
    clearing = platform_account(LedgerAccount.Kind.STRIPE_CLEARING)
    postings = [(clearing, Decimal("-25")), (wallet, Decimal("25"))]
    first = post_transaction(kind="top_up", key="t-1", description="top-up", postings=postings)
    again = post_transaction(kind="top_up", key="t-1", description="top-up", postings=postings)
    assert first.pk == again.pk
    assert account_balance(wallet) == before + 25
    assert ledger_total() == 0


@pytest.mark.parametrize(
    "amounts",
    [[Decimal("-1"), Decimal("2")], [Decimal("1")], [Decimal("0"), Decimal("0")]],
)
def test_unbalanced_transactions_are_refused_by_the_service(buyer, amounts):
    wallet = buyer_wallet(buyer)
    revenue = platform_account(LedgerAccount.Kind.PLATFORM_REVENUE)
    accounts = [revenue, wallet]
    with pytest.raises(UnbalancedTransaction):
        post_transaction(kind="credit", key="bad", description="x", postings=list(zip(accounts, amounts, strict=False)))
    assert not LedgerTransaction.objects.filter(key="bad").exists()


def test_money_must_be_decimal(buyer):
    wallet = buyer_wallet(buyer)
    with pytest.raises(TypeError):
        check_balanced([(wallet, 1.5), (wallet, -1.5)])


@postgres_only
def test_database_rejects_an_unbalanced_transaction(buyer):
    wallet = buyer_wallet(buyer)
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        tx = LedgerTransaction.objects.create(kind="credit", key="raw", description="raw")
        LedgerPosting.objects.create(transaction=tx, account=wallet, amount=Decimal("5"))
        connection.cursor().execute("SET CONSTRAINTS ALL IMMEDIATE")


@postgres_only
def test_database_rejects_update_and_delete_of_postings(buyer):
    posting = LedgerPosting.objects.filter(account=buyer_wallet(buyer)).first()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerPosting.objects.filter(pk=posting.pk).update(amount=Decimal("1000000"))
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        connection.cursor().execute("DELETE FROM billing_ledgerposting WHERE id = %s", [posting.pk])
