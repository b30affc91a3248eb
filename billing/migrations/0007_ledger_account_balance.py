"""Owner accounts (buyer wallets, supplier payables) keep their balance on the row.

On PostgreSQL the postings move it, and nothing else may:

- after each INSERT statement into ledger postings, a statement-level trigger adds the new postings'
  sums to their owner accounts (NUMERIC, exact; one UPDATE per statement, however many rows);
- a row trigger on ledger accounts rejects any other change of `balance` (an UPDATE not made by that
  trigger, i.e. at trigger depth 1) and starts every new account at zero.

Postings are append-only (0003, 0005), so the stored balance is always the sum of the postings;
`billing.ledger.balance_mismatches` audits that. SQLite gets no triggers: `billing.ledger` adds there.
"""

from decimal import Decimal

from django.db import migrations, models

OWNER_KINDS = ("buyer_wallet", "supplier_payable")


CREATE = """
CREATE OR REPLACE FUNCTION billing_ledger_balance_add() RETURNS trigger AS $$
BEGIN
    UPDATE billing_ledgeraccount AS a SET balance = a.balance + n.total
    FROM (SELECT account_id, SUM(amount) AS total FROM new_postings GROUP BY account_id) AS n
    WHERE a.id = n.account_id AND a.kind IN ('buyer_wallet', 'supplier_payable');
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER billing_posting_balance_add
    AFTER INSERT ON billing_ledgerposting
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION billing_ledger_balance_add();

CREATE OR REPLACE FUNCTION billing_account_balance_sealed() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.balance := 0;
    ELSIF NEW.balance IS DISTINCT FROM OLD.balance AND pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'a ledger account balance moves only with its postings'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER billing_account_balance_sealed
    BEFORE INSERT OR UPDATE ON billing_ledgeraccount
    FOR EACH ROW EXECUTE FUNCTION billing_account_balance_sealed();
"""

DROP = """
DROP TRIGGER IF EXISTS billing_account_balance_sealed ON billing_ledgeraccount;
DROP FUNCTION IF EXISTS billing_account_balance_sealed();
DROP TRIGGER IF EXISTS billing_posting_balance_add ON billing_ledgerposting;
DROP FUNCTION IF EXISTS billing_ledger_balance_add();
"""


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


def balances_from_postings(apps, schema_editor):
    """Each owner account's balance starts as the sum of its postings (exact on both databases)."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "UPDATE billing_ledgeraccount AS a SET balance = p.total"
            " FROM (SELECT account_id, SUM(amount) AS total FROM billing_ledgerposting GROUP BY account_id) AS p"
            " WHERE p.account_id = a.id AND a.kind IN ('buyer_wallet', 'supplier_payable')"
        )
        return
    LedgerAccount = apps.get_model("billing", "LedgerAccount")
    LedgerPosting = apps.get_model("billing", "LedgerPosting")
    for account in LedgerAccount.objects.filter(kind__in=OWNER_KINDS):
        account.balance = sum(
            LedgerPosting.objects.filter(account=account).values_list("amount", flat=True), Decimal(0)
        )
        account.save(update_fields=["balance"])


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0006_credit_note_request"),
    ]

    operations = [
        migrations.AddField(
            model_name="ledgeraccount",
            name="balance",
            field=models.DecimalField(
                decimal_places=6,
                default=Decimal("0"),
                editable=False,
                help_text="Owner accounts (buyer wallets, supplier payables): the sum of the account's postings, kept in the same database transaction as they are written (billing.ledger) and audited against them. Platform accounts leave it at zero: their balance is summed on read, so settlement workers never queue on one hot row.",
                max_digits=20,
            ),
        ),
        migrations.RunPython(balances_from_postings, migrations.RunPython.noop),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
