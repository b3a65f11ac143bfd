"""Indexes that keep the support search fast with a million accounts.

On PostgreSQL: pg_trgm and GIN trigram indexes on exactly the expressions Django's icontains
produces (UPPER("col"::text) LIKE UPPER('%q%')), so a partial name, domain or e-mail is an index
scan. SQLite has no trigram indexes; there icontains scans, which is fine at its scale.
On both: a B-tree index on card last4, which payments does not index.

On PostgreSQL the indexes are built CONCURRENTLY (hence atomic = False): a plain CREATE INDEX on
a million accounts would block every write to accounts and users, payments included, while it runs.
"""

from django.db import migrations

TRIGRAM_INDEXES = [
    ("support_account_name_trgm", "accounts_billingaccount", "name"),
    ("support_account_domain_trgm", "accounts_billingaccount", "domain"),
    ("support_user_email_trgm", "accounts_user", "email"),
]
LAST4_INDEX = ("support_paymentmethod_last4", "payments_paymentmethod", "last4")


def create_statements(*, concurrently=False):
    """The PostgreSQL SQL, also used by bench/support_search.py to rebuild the indexes after a load."""
    how = "CONCURRENTLY " if concurrently else ""
    name, table, column = LAST4_INDEX
    return (
        ["CREATE EXTENSION IF NOT EXISTS pg_trgm"]
        + [
            f'CREATE INDEX {how}IF NOT EXISTS "{name}" ON "{table}" USING gin ((UPPER("{column}"::text)) gin_trgm_ops)'
            for name, table, column in TRIGRAM_INDEXES
        ]
        + [f'CREATE INDEX {how}IF NOT EXISTS "{name}" ON "{table}" ("{column}")']
    )


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        name, table, column = LAST4_INDEX
        schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ("{column}")')
        return
    names = [name for name, _t, _c in TRIGRAM_INDEXES] + [LAST4_INDEX[0]]
    with schema_editor.connection.cursor() as cursor:
        # An interrupted CREATE INDEX CONCURRENTLY leaves an invalid index that IF NOT EXISTS would keep.
        cursor.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE NOT i.indisvalid AND c.relname = ANY(%s)",
            [names],
        )
        invalid = [row[0] for row in cursor.fetchall()]
    for name in invalid:
        schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
    for statement in create_statements(concurrently=True):
        schema_editor.execute(statement)


def drop_indexes(apps, schema_editor):
    for name, _table, _column in [*TRIGRAM_INDEXES, LAST4_INDEX]:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("support", "0002_support_staff_group"),
        ("accounts", "0001_initial"),
        ("payments", "0002_initial"),
    ]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
