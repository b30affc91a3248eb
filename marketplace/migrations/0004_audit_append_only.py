"""On PostgreSQL the audit log is append-only: UPDATE and DELETE are rejected by a trigger."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION marketplace_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only (% rejected)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$ LANGUAGE plpgsql;

CREATE TRIGGER marketplace_audit_append_only
    BEFORE UPDATE OR DELETE ON marketplace_auditentry
    FOR EACH ROW EXECUTE FUNCTION marketplace_audit_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS marketplace_audit_append_only ON marketplace_auditentry;
DROP FUNCTION IF EXISTS marketplace_audit_append_only();
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0003_auditentry")]

    operations = [migrations.RunPython(create, drop)]
