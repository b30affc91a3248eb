"""On PostgreSQL TRUNCATE of the audit log is rejected too (0004 rejects UPDATE and DELETE; TRUNCATE skips
row-level triggers). Superusers are let through: they can bypass any trigger anyway
(session_replication_role = replica), and Django's `flush` (run by transactional tests as the superuser)
is a TRUNCATE of every table. The app and owner roles are not superusers (docs/database-roles.md).
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION marketplace_audit_no_truncate() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND rolsuper) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only (TRUNCATE of % rejected)', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$ LANGUAGE plpgsql;

CREATE TRIGGER marketplace_audit_no_truncate
    BEFORE TRUNCATE ON marketplace_auditentry
    FOR EACH STATEMENT EXECUTE FUNCTION marketplace_audit_no_truncate();
"""

DROP = """
DROP TRIGGER IF EXISTS marketplace_audit_no_truncate ON marketplace_auditentry;
DROP FUNCTION IF EXISTS marketplace_audit_no_truncate();
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0004_audit_append_only")]

    operations = [migrations.RunPython(create, drop)]
