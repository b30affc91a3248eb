"""The ledger is sealed on PostgreSQL (0003 already rejects unbalanced transactions and UPDATE/DELETE of postings):

- TRUNCATE of ledger postings and ledger transactions is rejected (statement-level BEFORE TRUNCATE
  triggers; TRUNCATE skips row-level DELETE triggers). Superusers are let through: they can bypass any
  trigger anyway (session_replication_role = replica), and Django's `flush` (run by transactional tests
  as the superuser) is a TRUNCATE of every table. The app and owner roles are not superusers
  (docs/database-roles.md);
- a ledger transaction records, in `created_txid`, the database transaction that inserted it (set by a
  trigger: whatever the client sends is overwritten), and a posting may be inserted only in that same
  database transaction: nothing can be appended to a committed ledger transaction, not even a balanced
  pair. txid_current() is the top-level transaction id, so savepoints (nested atomic blocks) are fine;
- UPDATE and DELETE of ledger transactions are rejected (the application never updates them: usage
  records point to them with `settled_by`, an UPDATE of usage records).

SQLite gets nothing here (the column is added and stays empty).
"""

from django.db import migrations, models

CREATE = """
CREATE OR REPLACE FUNCTION billing_ledger_no_truncate() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND rolsuper) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the ledger is append-only (TRUNCATE of % rejected)', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$ LANGUAGE plpgsql;

CREATE TRIGGER billing_posting_no_truncate
    BEFORE TRUNCATE ON billing_ledgerposting
    FOR EACH STATEMENT EXECUTE FUNCTION billing_ledger_no_truncate();

CREATE TRIGGER billing_transaction_no_truncate
    BEFORE TRUNCATE ON billing_ledgertransaction
    FOR EACH STATEMENT EXECUTE FUNCTION billing_ledger_no_truncate();

CREATE OR REPLACE FUNCTION billing_transaction_stamp_txid() RETURNS trigger AS $$
BEGIN
    NEW.created_txid := txid_current();
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER billing_transaction_stamp_txid
    BEFORE INSERT ON billing_ledgertransaction
    FOR EACH ROW EXECUTE FUNCTION billing_transaction_stamp_txid();

CREATE OR REPLACE FUNCTION billing_transaction_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger transactions are append-only (% rejected)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$ LANGUAGE plpgsql;

CREATE TRIGGER billing_transaction_append_only
    BEFORE UPDATE OR DELETE ON billing_ledgertransaction
    FOR EACH ROW EXECUTE FUNCTION billing_transaction_append_only();

CREATE OR REPLACE FUNCTION billing_posting_same_db_transaction() RETURNS trigger AS $$
DECLARE created bigint;
BEGIN
    SELECT created_txid INTO created FROM billing_ledgertransaction WHERE id = NEW.transaction_id;
    IF NOT FOUND THEN
        RETURN NEW;  -- the foreign key rejects it
    END IF;
    IF created IS DISTINCT FROM txid_current() THEN
        RAISE EXCEPTION 'ledger transaction % is sealed: postings are added only when it is created',
            NEW.transaction_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER billing_posting_same_db_transaction
    BEFORE INSERT ON billing_ledgerposting
    FOR EACH ROW EXECUTE FUNCTION billing_posting_same_db_transaction();
"""

DROP = """
DROP TRIGGER IF EXISTS billing_posting_same_db_transaction ON billing_ledgerposting;
DROP FUNCTION IF EXISTS billing_posting_same_db_transaction();
DROP TRIGGER IF EXISTS billing_transaction_append_only ON billing_ledgertransaction;
DROP FUNCTION IF EXISTS billing_transaction_append_only();
DROP TRIGGER IF EXISTS billing_transaction_stamp_txid ON billing_ledgertransaction;
DROP FUNCTION IF EXISTS billing_transaction_stamp_txid();
DROP TRIGGER IF EXISTS billing_transaction_no_truncate ON billing_ledgertransaction;
DROP TRIGGER IF EXISTS billing_posting_no_truncate ON billing_ledgerposting;
DROP FUNCTION IF EXISTS billing_ledger_no_truncate();
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_stripeevent_payout_topup")]

    operations = [
        migrations.AddField(
            model_name="ledgertransaction",
            name="created_txid",
            field=models.BigIntegerField(
                blank=True,
                editable=False,
                help_text="PostgreSQL only: txid_current() of the database transaction that inserted the row, set "
                "by a trigger (not read back on save). Postings may be added to this transaction only in that "
                "database transaction.",
                null=True,
            ),
        ),
        migrations.RunPython(create, drop),
    ]
