"""On PostgreSQL the database itself keeps the ledger honest:

- a deferred constraint trigger rejects, at commit, any transaction whose postings do not sum to
  zero per currency;
- UPDATE and DELETE on postings are rejected (the ledger is append-only).
SQLite gets the same rules from billing.services.check_balanced.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION billing_posting_balanced() RETURNS trigger AS $$
DECLARE unbalanced RECORD;
BEGIN
    SELECT currency, SUM(amount) AS total INTO unbalanced
      FROM billing_ledgerposting WHERE transaction_id = NEW.transaction_id
     GROUP BY currency HAVING SUM(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % does not balance in % (sum %)',
            NEW.transaction_id, unbalanced.currency, unbalanced.total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER billing_posting_balanced
    AFTER INSERT ON billing_ledgerposting
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION billing_posting_balanced();

CREATE OR REPLACE FUNCTION billing_posting_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger postings are append-only (% rejected)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$ LANGUAGE plpgsql;

CREATE TRIGGER billing_posting_append_only
    BEFORE UPDATE OR DELETE ON billing_ledgerposting
    FOR EACH ROW EXECUTE FUNCTION billing_posting_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS billing_posting_append_only ON billing_ledgerposting;
DROP FUNCTION IF EXISTS billing_posting_append_only();
DROP TRIGGER IF EXISTS billing_posting_balanced ON billing_ledgerposting;
DROP FUNCTION IF EXISTS billing_posting_balanced();
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_initial")]

    operations = [migrations.RunPython(create, drop)]
