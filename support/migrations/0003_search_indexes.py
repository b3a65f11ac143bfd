"""Indexes that keep the support search fast with a million accounts.

On PostgreSQL: pg_trgm and GIN trigram indexes on exactly the expressions Django's icontains
produces (UPPER("col"::text) LIKE UPPER('%q%')), so a partial name, domain or e-mail is an index
scan. SQLite has no trigram indexes; there icontains scans, which is fine at its scale.
On both: a B-tree index on card last4, which payments does not index.
"""

from django.db import migrations

TRIGRAM_INDEXES = [
    ("support_account_name_trgm", "accounts_billingaccount", "name"),
    ("support_account_domain_trgm", "accounts_billingaccount", "domain"),
    ("support_user_email_trgm", "accounts_user", "email"),
]


def create_statements():
    """The SQL, also used by bench/support_search.py to rebuild the indexes after a bulk load."""
    return ["CREATE EXTENSION IF NOT EXISTS pg_trgm"] + [
        f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" USING gin ((UPPER("{column}"::text)) gin_trgm_ops)'
        for name, table, column in TRIGRAM_INDEXES
    ]


def create_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for statement in create_statements():
        schema_editor.execute(statement)


def drop_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _table, _column in TRIGRAM_INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [
        ("support", "0002_support_staff_group"),
        ("accounts", "0001_initial"),
        ("payments", "0002_initial"),
    ]

    operations = [
        migrations.RunPython(create_trigram_indexes, drop_trigram_indexes),
        migrations.RunSQL(
            'CREATE INDEX IF NOT EXISTS "support_paymentmethod_last4" ON "payments_paymentmethod" ("last4")',
            'DROP INDEX IF EXISTS "support_paymentmethod_last4"',
        ),
    ]
