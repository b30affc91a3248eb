"""The ledger and the audit log are sealed in PostgreSQL (billing 0005, marketplace 0005), and the app can run
as a role that does not own them, so it cannot lift the seal (docs/database-roles.md)."""

import json
import os
import secrets
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.db import DatabaseError, IntegrityError, connection, router, transaction
from django.db.utils import ConnectionHandler

from billing.ledger import buyer_wallet, platform_account, post_transaction
from billing.models import LedgerAccount, LedgerPosting, LedgerTransaction
from billing.selectors import account_balance
from marketplace.db_routers import OwnerMigrationsRouter
from tests.factories import UserFactory

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="database triggers are PostgreSQL's")

SEALED_TABLES = ["billing_ledgerposting", "billing_ledgertransaction", "marketplace_auditentry"]

# The lines proposed for marketplace/settings/base.py, after the DATABASES block (tested as they are below).
SETTINGS_LINES = """\
# --- Database roles (docs/database-roles.md): the app connects (DATABASE_URL) as a role that owns no table;
# the owner runs `manage.py migrate --database owner` (DATABASE_OWNER_URL, set for the migrate job only).
if env("DATABASE_OWNER_URL", default=""):
    DATABASES["owner"] = env.db("DATABASE_OWNER_URL")
    DATABASES["owner"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["marketplace.db_routers.OwnerMigrationsRouter"]
"""


def _one(sql: str, params=None, using=connection):
    with using.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def _is_superuser() -> bool:
    return _one("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")


def _new_role_name() -> str:
    return f"ledger_seal_{secrets.token_hex(5)}"


def _usd(wallet_amount: str, wallet: LedgerAccount, other: LedgerAccount) -> list[tuple[LedgerAccount, Decimal]]:
    return [(other, -Decimal(wallet_amount)), (wallet, Decimal(wallet_amount))]


# --- TRUNCATE ---------------------------------------------------------------------------------------------


@postgres_only
@pytest.mark.django_db
@pytest.mark.parametrize("table", SEALED_TABLES)
def test_truncate_is_refused_even_to_a_role_allowed_to_truncate(buyer, table):
    """A role holding the TRUNCATE privilege (the owner; an app role granted ALL by mistake) is refused."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE waits for no deferred balance check
        if _is_superuser():  # superusers are let through (Django's flush); act as an ordinary role
            role = _new_role_name()
            cursor.execute(f"CREATE ROLE {role} NOLOGIN")  # rolled back with the test
            cursor.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
            cursor.execute(f"GRANT TRUNCATE ON ALL TABLES IN SCHEMA public TO {role}")
            cursor.execute(f"SET LOCAL ROLE {role}")
        elif _one("SELECT pg_get_userbyid(relowner) = current_user FROM pg_class WHERE oid = %s::regclass", [table]):
            pass  # the test runs as the owner
        else:
            pytest.skip("needs a superuser or the table owner")
        try:
            refused = pytest.raises(DatabaseError, match=rf"append-only \(TRUNCATE of {table} rejected\)")
            with refused, transaction.atomic():
                cursor.execute(f"TRUNCATE {table} CASCADE")
        finally:
            cursor.execute("RESET ROLE")
    assert LedgerPosting.objects.filter(account=buyer_wallet(buyer)).exists()


@postgres_only
@pytest.mark.django_db
def test_a_superuser_may_truncate_as_djangos_flush_does(buyer):
    """The one exemption: superusers can switch triggers off anyway (session_replication_role)."""
    if not _is_superuser():
        pytest.skip("needs a superuser")
    with transaction.atomic():
        connection.cursor().execute("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE waits for no deferred check
        connection.cursor().execute(f"TRUNCATE {', '.join(SEALED_TABLES)} CASCADE")
        assert not LedgerPosting.objects.exists()
        transaction.set_rollback(True)
    assert LedgerPosting.objects.exists()


# --- postings join a ledger transaction only in the database transaction that created it -------------------


@postgres_only
@pytest.mark.django_db
def test_the_creating_database_transaction_is_stamped_by_the_database(buyer):
    forged = LedgerTransaction.objects.create(kind="credit", key="seal-forged", description="x", created_txid=1)
    forged.refresh_from_db()
    assert forged.created_txid == _one("SELECT txid_current()")


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_balanced_pair_cannot_be_added_to_a_committed_transaction():
    buyer = UserFactory(credit=0)
    wallet, clearing = buyer_wallet(buyer), platform_account(LedgerAccount.Kind.STRIPE_CLEARING)
    old = post_transaction(kind="top_up", key="seal-old", description="top-up", postings=_usd("25", wallet, clearing))
    assert not connection.in_atomic_block  # committed

    pair = [
        LedgerPosting(transaction=old, account=wallet, amount=Decimal("1000")),
        LedgerPosting(transaction=old, account=clearing, amount=Decimal("-1000")),
    ]
    with pytest.raises(DatabaseError, match=rf"ledger transaction {old.pk} is sealed"), transaction.atomic():
        LedgerPosting.objects.bulk_create(pair)
    with pytest.raises(DatabaseError, match="is sealed"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_ledgerposting (transaction_id, account_id, amount, currency) "
            "VALUES (%s, %s, 7, 'USD'), (%s, %s, -7, 'USD')",
            [old.pk, wallet.pk, old.pk, clearing.pk],
        )
    assert old.postings.count() == 2
    assert account_balance(wallet) == Decimal("25")


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_posting_still_works_inside_savepoints_and_the_balance_check_still_runs_at_commit():
    buyer = UserFactory(credit=0)
    wallet, clearing = buyer_wallet(buyer), platform_account(LedgerAccount.Kind.STRIPE_CLEARING)
    with transaction.atomic():
        with transaction.atomic():  # a savepoint; post_transaction opens another one inside
            ledger_transaction = post_transaction(
                kind="top_up", key="seal-nested", description="top-up", postings=_usd("10", wallet, clearing)
            )
        with transaction.atomic():  # later, in another savepoint of the same database transaction: allowed
            LedgerPosting.objects.bulk_create(
                [
                    LedgerPosting(transaction=ledger_transaction, account=wallet, amount=Decimal("5")),
                    LedgerPosting(transaction=ledger_transaction, account=clearing, amount=Decimal("-5")),
                ]
            )
    assert ledger_transaction.postings.count() == 4
    assert account_balance(wallet) == Decimal("15")

    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        unbalanced = LedgerTransaction.objects.create(kind="credit", key="seal-unbalanced", description="x")
        LedgerPosting.objects.create(transaction=unbalanced, account=wallet, amount=Decimal("5"))
    assert not LedgerTransaction.objects.filter(key="seal-unbalanced").exists()


# --- UPDATE / DELETE of ledger transactions ----------------------------------------------------------------


@postgres_only
@pytest.mark.django_db
def test_ledger_transactions_cannot_be_updated_or_deleted(buyer):
    credit = LedgerTransaction.objects.filter(postings__account=buyer_wallet(buyer)).first()
    for change in [
        {"description": "edited"},
        {"reference": {"user": 0}},
        {"created_txid": _one("SELECT txid_current()")},  # re-opening it for postings
        {"created_by": None},
    ]:
        refused = pytest.raises(DatabaseError, match=r"ledger transactions are append-only \(UPDATE rejected\)")
        with refused, transaction.atomic():
            LedgerTransaction.objects.filter(pk=credit.pk).update(**change)

    empty = LedgerTransaction.objects.create(kind="credit", key="seal-empty", description="no postings to protect it")
    with pytest.raises(DatabaseError, match=r"append-only \(DELETE rejected\)"), transaction.atomic():
        empty.delete()
    with pytest.raises(DatabaseError, match=r"append-only \(DELETE rejected\)"), transaction.atomic():
        connection.cursor().execute("DELETE FROM billing_ledgertransaction WHERE id = %s", [empty.pk])
    assert LedgerTransaction.objects.filter(pk__in=[credit.pk, empty.pk]).count() == 2


# --- running as a role that does not own the tables --------------------------------------------------------


def test_the_router_keeps_the_app_on_its_own_role(settings):
    """Even an object loaded through "owner" is read and written through "default" (no database needed)."""
    settings.DATABASE_ROUTERS = ["marketplace.db_routers.OwnerMigrationsRouter"]
    loaded_as_owner = LedgerTransaction(pk=1)
    loaded_as_owner._state.db = "owner"
    assert router.db_for_read(LedgerPosting, instance=loaded_as_owner) == "default"
    assert router.db_for_write(LedgerPosting, instance=loaded_as_owner) == "default"
    assert router.allow_relation(loaded_as_owner, LedgerPosting())
    for alias in ("default", "owner"):  # no opinion: migrate runs where it is pointed, and records what it ran
        assert OwnerMigrationsRouter().allow_migrate(alias, "billing") is None
        assert router.allow_migrate(alias, "billing")


def _url(settings_dict: dict, *, user: str, password: str) -> str:
    host = quote(settings_dict["HOST"] or "/var/run/postgresql", safe="")
    port = f":{settings_dict['PORT']}" if settings_dict["PORT"] else ""
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}" if password else quote(user, safe="")
    return f"postgres://{auth}@{host}{port}/{quote(settings_dict['NAME'], safe='')}"


@pytest.fixture
def app_role(transactional_db):
    """A LOGIN role granted what docs/database-roles.md grants the app, committed so it can connect."""
    if not _is_superuser():
        pytest.skip("creating a login role needs a superuser test connection")
    role, password = _new_role_name(), secrets.token_hex(16)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        cursor.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")
        cursor.execute(f"REVOKE INSERT, UPDATE, DELETE ON django_migrations FROM {role}")
    try:
        yield role, password
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP OWNED BY {role}")  # its grants
            cursor.execute(f"DROP ROLE {role}")


@postgres_only
def test_the_app_role_cannot_switch_the_seal_off(app_role):
    role, password = app_role
    app = ConnectionHandler({"default": {**connection.settings_dict, "USER": role, "PASSWORD": password}})["default"]
    try:
        assert _one("SELECT current_user", using=app) == role
        for statement in [
            "ALTER TABLE billing_ledgerposting DISABLE TRIGGER ALL",
            "ALTER TABLE billing_ledgertransaction DISABLE TRIGGER billing_transaction_append_only",
            "ALTER TABLE marketplace_auditentry DISABLE TRIGGER ALL",
            "DROP TRIGGER billing_posting_same_db_transaction ON billing_ledgerposting",
            "CREATE OR REPLACE FUNCTION billing_posting_append_only() RETURNS trigger AS $$ BEGIN RETURN NULL; END $$"
            " LANGUAGE plpgsql",
            "SET session_replication_role = replica",  # the superuser's way around triggers
            "TRUNCATE billing_ledgerposting CASCADE",
            "TRUNCATE marketplace_auditentry",
        ]:
            with pytest.raises(DatabaseError, match=r"must be owner|permission denied"), app.cursor() as cursor:
                cursor.execute(statement)
        assert _one("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'billing_%' AND tgenabled = 'O'") == 9
    finally:
        app.close()


@postgres_only
def test_the_app_runs_as_the_app_role_and_migrates_as_the_owner(app_role, tmp_path):
    """The proposed settings lines, in a real process: DATABASE_URL is the app role, DATABASE_OWNER_URL the owner."""
    role, password = app_role
    (tmp_path / "seal_settings.py").write_text(f"from marketplace.settings.test import *  # noqa\n\n{SETTINGS_LINES}")
    script = textwrap.dedent(
        """
        import json

        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        from billing.ledger import buyer_wallet
        from billing.models import LedgerTransaction
        from billing.selectors import account_balance
        from tests.factories import UserFactory

        def user_of(alias):
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT current_user")
                return cursor.fetchone()[0]

        buyer = UserFactory(email="seal-app-role@example.com", credit="25")  # the ledger service, as the app
        owner_loaded = LedgerTransaction.objects.using("owner").get(key=f"test-credit:{buyer.pk}")
        call_command("migrate", "--check", database="owner", verbosity=0)  # the owner sees every migration
        try:
            call_command("migrate", "billing", "0004", database="default", verbosity=0)  # unseal, as the app
            unseal = "allowed"
        except Exception as error:
            unseal = str(error)
        print(json.dumps({
            "default": user_of("default"),
            "owner": user_of("owner"),
            "balance": str(account_balance(buyer_wallet(buyer))),
            "related_from_owner_object": owner_loaded.postings.all().db,
            "unseal": unseal,
        }))
        """
    )
    owner_user = connection.settings_dict["USER"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "seal_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(django_settings.BASE_DIR)]),
        "DATABASE_URL": _url(connection.settings_dict, user=role, password=password),
        "DATABASE_OWNER_URL": _url(
            connection.settings_dict, user=owner_user, password=connection.settings_dict["PASSWORD"]
        ),
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=Path(django_settings.BASE_DIR),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["default"], result["owner"]) == (role, owner_user)
    assert Decimal(result["balance"]) == 25
    assert result["related_from_owner_object"] == "default"
    # Refused either way: by the first migration back that needs the owner's rights, or, where the newest
    # migrations run no SQL (a new Python-side default), by the migration record the app may not write.
    assert "must be owner" in result["unseal"] or "permission denied for table django_migrations" in result["unseal"]
    assert _one("SELECT count(*) FROM django_migrations WHERE app = 'billing' AND name = '0005_ledger_seal'") == 1
    assert _one("SELECT count(*) FROM pg_trigger WHERE tgname = 'billing_posting_same_db_transaction'") == 1


# --- a stored balance moves only with its postings (billing 0007) ------------------------------------------


@postgres_only
@pytest.mark.django_db
def test_a_stored_balance_moves_only_with_its_postings():
    buyer = UserFactory(credit=0)
    wallet, clearing = buyer_wallet(buyer), platform_account(LedgerAccount.Kind.STRIPE_CLEARING)
    with transaction.atomic():  # postings written around the service still move the balance (the trigger)
        raw = LedgerTransaction.objects.create(kind="top_up", key="seal-raw", description="top-up")
        LedgerPosting.objects.bulk_create(
            [
                LedgerPosting(transaction=raw, account=wallet, amount=Decimal("12.5")),
                LedgerPosting(transaction=raw, account=clearing, amount=Decimal("-12.5")),
            ]
        )
    assert account_balance(wallet) == Decimal("12.5")
    with (
        pytest.raises(DatabaseError, match="moves only with its postings"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE billing_ledgeraccount SET balance = 1000000 WHERE id = %s", [wallet.pk])
    with pytest.raises(DatabaseError, match="moves only with its postings"), transaction.atomic():
        LedgerAccount.objects.filter(pk=wallet.pk).update(balance=Decimal("1000000"))
    rich = LedgerAccount.objects.create(kind="buyer_wallet", user=UserFactory(credit=0), key="x", balance=Decimal(9))
    rich.refresh_from_db()
    assert rich.balance == 0  # a new account starts at zero whatever the client sends
    assert account_balance(wallet) == Decimal("12.5")
