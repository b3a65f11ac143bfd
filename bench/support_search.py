"""Support search over a million billing accounts on PostgreSQL.

For each search key, 50 different queries drawn from the loaded data: p50/p95 of the selector
(support.selectors.support_search, ORM and Python included) and, in the same run, of the bare
SQL it sends (the very statements, captured and replayed on the raw psycopg connection). Each
query is timed three times, selector and SQL alternating, and its best time kept.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bp_sup_bench .venv/bin/python bench/support_search.py

The data (accounts, members, subscriptions, invoices, cards, payment attempts, in proportion) is
generated inside PostgreSQL with generate_series, which loads a million accounts in a few
minutes; a second run reuses it unless --reload. It runs only against a database whose name
contains "bench", because loading truncates the billing tables. Results: bench/results/support_search.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUNS_PER_KEY = 50
REPEATS = 3

# Per account: 1.25 members, 1 subscription, 2 invoices, 0.9 cards (10% pay by bank transfer),
# 0.5 payment attempts. First words repeat every 20 accounts, so "northw" matches 5% of them.
FIRST_WORDS = [
    "Northwind", "Contoso", "Fabrikam", "Adatum", "Litware", "Tailspin", "Wingtip", "Woodgrove",
    "Proseware", "Lucerne", "Alpine", "Coho", "Fourth Coffee", "Graphic Design", "Humongous",
    "Margie", "Relecloud", "Trey Research", "Wide World", "Blue Yonder",
]  # fmt: skip
SUFFIXES = ["Ltd", "BV", "GmbH", "Inc", "LLC", "SA", "Traders", "Group", "Partners", "Holdings"]

# The bench database holds only benchmark data: users go too (a row-by-row DELETE of a million
# users with their foreign-key checks takes far longer than loading them).
TRUNCATE = """
TRUNCATE payments_paymentallocation, payments_paymentattempt, subscriptions_invoiceline,
  subscriptions_invoice, subscriptions_subscription, payments_paymentmethod, accounts_membership,
  audit_auditevent, notifications_notice, support_supportnote, accounts_billingaccount, accounts_user
  RESTART IDENTITY CASCADE;
"""


def _load_sql(n: int) -> list[tuple[str, str]]:
    words = "ARRAY[" + ",".join(f"'{w}'" for w in FIRST_WORDS) + "]"
    suffixes = "ARRAY[" + ",".join(f"'{s}'" for s in SUFFIXES) + "]"
    return [
        (
            "products",
            "INSERT INTO subscriptions_product (code, name, description, billing_period) "
            "VALUES ('bench-m365', 'Microsoft 365 Business Standard', '', 'monthly') ON CONFLICT (code) DO NOTHING",
        ),
        (
            "accounts",
            f"""
            INSERT INTO accounts_billingaccount (id, name, domain, currency, language, address_line1, address_line2,
              postal_code, city, country, tax_id, notification_email, payment_mode, remittance_bank_name,
              remittance_account_holder, remittance_iban, remittance_bic, created_at, additional_recipients,
              invoice_email_attachments, po_number)
            SELECT i,
              ({words})[1 + i % {len(FIRST_WORDS)}] || ' ' || initcap(substr(md5(i::text), 1, 7)) || ' '
                || ({suffixes})[1 + (i / {len(FIRST_WORDS)}) % {len(SUFFIXES)}],
              substr(md5(i::text), 8, 8) || '-' || i || '.example',
              CASE WHEN i % 3 = 0 THEN 'USD' ELSE 'EUR' END, 'en', '1 Main Street', '', '1000 AA', 'Amsterdam',
              'NL', '', 'billing@' || substr(md5(i::text), 8, 8) || '-' || i || '.example',
              CASE WHEN i % 10 = 0 THEN 'bank_transfer' ELSE 'card' END,
              CASE WHEN i % 10 = 0 THEN 'Bench Bank' ELSE '' END, '',
              CASE WHEN i % 10 = 0 THEN 'NL91ABNA0417164300' ELSE '' END, '',
              now() - (i % 1000) * interval '1 day', '[]'::jsonb, false, ''
            FROM generate_series(1, {n}) AS i
            """,
        ),
        (
            "users",
            f"""
            INSERT INTO accounts_user (id, password, is_superuser, first_name, last_name, is_staff, is_active,
              date_joined, email, full_name)
            SELECT u, '!', false, '', '', false, true, now(),
              CASE WHEN u <= {n} THEN 'admin' ELSE 'finance' END || '.' || substr(md5(u::text), 1, 6)
                || '.' || u || '@bench.example',
              'Member ' || u
            FROM (SELECT generate_series(1, {n}) AS u UNION ALL SELECT {n} + generate_series(1, {n} / 4)) AS s
            """,
        ),
        (
            "memberships",
            f"""
            INSERT INTO accounts_membership (user_id, account_id, role, created_at)
            SELECT u, CASE WHEN u <= {n} THEN u ELSE (u - {n}) * 4 END,
              CASE WHEN u <= {n} THEN 'owner' ELSE 'admin' END, now()
            FROM (SELECT generate_series(1, {n}) AS u UNION ALL SELECT {n} + generate_series(1, {n} / 4)) AS s
            """,
        ),
        (
            "payment methods",
            f"""
            INSERT INTO payments_paymentmethod (id, account_id, brand, last4, exp_month, exp_year, holder_name,
              owner_id, status, last_decline_code, is_default, gateway, gateway_token, created_at, address_line1,
              address_line2, postal_code, city, country, fingerprint, blocked_reason)
            SELECT i, i, CASE WHEN i % 2 = 0 THEN 'visa' ELSE 'mastercard' END,
              lpad(((i::bigint * 7919) % 10000)::text, 4, '0'), 1 + i % 12, 2027 + i % 5, '', i,
              CASE WHEN i % 17 = 0 THEN 'declined' ELSE 'valid' END,
              CASE WHEN i % 17 = 0 THEN 'card_declined' ELSE '' END, true, 'simulated', 'bench_tok_' || i, now(),
              '', '', '', '', '', '', ''
            FROM generate_series(1, {n}) AS i WHERE i % 10 <> 0
            """,
        ),
        (
            "subscriptions",
            f"""
            INSERT INTO subscriptions_subscription (id, account_id, product_id, quantity, unit_price_minor,
              currency, status, payment_method_id, current_period_start, current_period_end, past_due_since,
              grace_ends_at, disabled_at, next_lifecycle_at, created_at)
            SELECT i, i, (SELECT id FROM subscriptions_product WHERE code = 'bench-m365'), 1 + i % 25, 1170,
              CASE WHEN i % 3 = 0 THEN 'USD' ELSE 'EUR' END,
              CASE WHEN i % 17 = 0 THEN 'past_due' WHEN i % 51 = 0 THEN 'disabled' ELSE 'active' END,
              CASE WHEN i % 10 = 0 THEN NULL ELSE i END, current_date - 10, current_date + 19,
              CASE WHEN i % 17 = 0 OR i % 51 = 0 THEN now() - interval '5 days' END,
              CASE WHEN i % 17 = 0 OR i % 51 = 0 THEN now() + interval '25 days' END,
              CASE WHEN i % 51 = 0 AND i % 17 <> 0 THEN now() END,
              CASE WHEN i % 17 = 0 OR i % 51 = 0 THEN now() + interval '25 days' END, now()
            FROM generate_series(1, {n}) AS i
            """,
        ),
        (
            "invoices",
            f"""
            INSERT INTO subscriptions_invoice (id, account_id, subscription_id, number, status, transaction_type,
              currency, total_minor, amount_due_minor, issued_on, due_on, paid_at, first_failed_at,
              attempt_count, created_at)
            SELECT j, (j + 1) / 2, (j + 1) / 2, 'INV-2026-' || lpad(j::text, 8, '0'),
              CASE WHEN j % 2 = 1 THEN 'paid'
                   WHEN ((j + 1) / 2) % 17 = 0 OR ((j + 1) / 2) % 51 = 0 THEN 'past_due' ELSE 'open' END,
              'renew', CASE WHEN ((j + 1) / 2) % 3 = 0 THEN 'USD' ELSE 'EUR' END, 1170 * (1 + ((j + 1) / 2) % 25),
              CASE WHEN j % 2 = 1 THEN 0 ELSE 1170 * (1 + ((j + 1) / 2) % 25) END,
              current_date - 40 + (j % 2) * 30, current_date - 40 + (j % 2) * 30 + 30,
              CASE WHEN j % 2 = 1 THEN now() - interval '30 days' END,
              CASE WHEN j % 2 = 0 AND (((j + 1) / 2) % 17 = 0 OR ((j + 1) / 2) % 51 = 0)
                   THEN now() - interval '5 days' END, 0, now()
            FROM generate_series(1, {2 * n}) AS j
            """,
        ),
        (
            "payment attempts",
            f"""
            INSERT INTO payments_paymentattempt (id, account_id, payment_method_id, amount_minor, currency, status,
              source, decline_code, decline_message, idempotency_key, gateway, gateway_reference, action_url,
              initiated_by_label, reference_note, reconcile_count, created_at, completed_at, off_session,
              operator_error)
            SELECT a, a * 2, CASE WHEN (a * 2) % 10 = 0 THEN NULL ELSE a * 2 END, 1170,
              CASE WHEN (a * 2) % 3 = 0 THEN 'USD' ELSE 'EUR' END,
              CASE WHEN a % 7 = 0 THEN 'failed' ELSE 'succeeded' END,
              CASE WHEN (a * 2) % 10 = 0 THEN 'bank_transfer' ELSE 'renewal' END,
              CASE WHEN a % 7 = 0 THEN 'card_declined' ELSE '' END, '', 'bench-' || a, 'simulated', '', '',
              'job: renewals', '', 0, now() - (a % 60) * interval '1 day', now() - (a % 60) * interval '1 day', true,
              ''
            FROM generate_series(1, {n} / 2) AS a
            """,
        ),
    ]


def _connect() -> Any:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("SECRET_KEY", "bench-only")
    django.setup()
    from django.db import connection

    return connection


def _load(connection: Any, n: int) -> None:
    import importlib

    # The index definitions of the migration that creates them, so the benchmark measures the same.
    _search_indexes = importlib.import_module("support.migrations.0003_search_indexes")

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(TRUNCATE)
        # Build the trigram indexes once after loading, not row by row.
        for name, _table, _column in _search_indexes.TRIGRAM_INDEXES:
            cursor.execute(f'DROP INDEX IF EXISTS "{name}"')
        cursor.execute("SET maintenance_work_mem = '512MB'")
        for label, sql in _load_sql(n):
            t = time.perf_counter()
            cursor.execute(sql)
            print(f"  {label:<18} {cursor.rowcount:>10,} rows  {time.perf_counter() - t:6.1f} s", flush=True)
        t = time.perf_counter()
        for statement in _search_indexes.create_statements():
            cursor.execute(statement)
        print(f"  {'trigram indexes':<18} {'':>10}       {time.perf_counter() - t:6.1f} s", flush=True)
        for table in ("accounts_billingaccount", "accounts_user", "subscriptions_subscription",
                      "subscriptions_invoice", "payments_paymentmethod", "payments_paymentattempt",
                      "accounts_membership"):  # fmt: skip
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        t = time.perf_counter()
        cursor.execute("ANALYZE")
        print(f"  {'analyze':<18} {'':>10}       {time.perf_counter() - t:6.1f} s", flush=True)
    print(f"Loaded {n:,} accounts in {time.perf_counter() - started:.0f} s", flush=True)


def _queries(connection: Any, n: int, rng: random.Random) -> dict[str, list[str]]:
    """~50 real queries per key, drawn from the loaded rows."""
    ids = [rng.randint(1, n) for _ in range(RUNS_PER_KEY)]
    with connection.cursor() as cursor:

        def column(sql: str) -> list[str]:
            cursor.execute(sql, [ids])
            return [row[0] for row in cursor.fetchall()]

        names = column("SELECT name FROM accounts_billingaccount WHERE id = ANY(%s)")
        domains = column("SELECT domain FROM accounts_billingaccount WHERE id = ANY(%s)")
        emails = column("SELECT u.email FROM accounts_user u WHERE u.id = ANY(%s)")
        numbers = column("SELECT number FROM subscriptions_invoice WHERE id = ANY(%s)")
        cursor.execute("SELECT id FROM payments_paymentattempt ORDER BY random() LIMIT %s", [RUNS_PER_KEY])
        attempts = [row[0] for row in cursor.fetchall()]
    return {
        # What an agent types: a fragment of the distinctive part of the name ("Northwind 3fa9c1d Ltd").
        "name (partial)": [name.split(" ")[-2][:5].lower() for name in names],
        # A fragment shared by 5% of all accounts: the first 50 hits, unsorted, are enough.
        "name (common)": [rng.choice(["northw", "contos", "fabrik", "litwar", "tailsp"]) for _ in ids],
        "domain": domains,
        # Exact keys miss, so the trigram fallback answers: part of a domain, part of an address.
        "domain (partial)": [d.split(".")[0][2:] for d in domains],
        "member e-mail": emails,
        "member e-mail (partial)": [e.split("@")[0][-9:] + "@ben" for e in emails],
        "invoice number": numbers,
        "subscription id": [str(i) for i in ids],
        "payment reference": [f"PAY-{pk:08d}" for pk in attempts],
        "card last4": [f"{rng.randint(0, 9999):04d}" for _ in ids],
    }


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def _measure(connection: Any, queries: dict[str, list[str]]) -> list[dict[str, Any]]:
    from django.test.utils import CaptureQueriesContext

    from support.selectors import support_search

    raw = connection.connection  # psycopg: no ORM, no Django cursor wrapper
    rows = []
    for key, qs in queries.items():
        selector_ms: list[float] = []
        sql_ms: list[float] = []
        statements = 0
        hits = 0
        for q in qs:
            support_search(query=q)  # warm: buffers
            with CaptureQueriesContext(connection) as captured:
                results = support_search(query=q)
            hits += bool(results)
            sqls = [c["sql"] for c in captured.captured_queries]
            statements = len(sqls)
            # Best of REPEATS for each query, alternating selector and bare SQL, so that another
            # process taking the CPU for a moment (this machine is shared) does not count as ours.
            best_selector = best_sql = float("inf")
            for _ in range(REPEATS):
                t = time.perf_counter()
                support_search(query=q)
                best_selector = min(best_selector, (time.perf_counter() - t) * 1000)
                with raw.cursor() as cursor:
                    t = time.perf_counter()
                    for sql in sqls:
                        cursor.execute(sql)
                        cursor.fetchall()
                    best_sql = min(best_sql, (time.perf_counter() - t) * 1000)
            selector_ms.append(best_selector)
            sql_ms.append(best_sql)
        row = {
            "key": key,
            "queries": len(qs),
            "found": hits,
            "sql_statements": statements,
            "selector_p50_ms": round(statistics.median(selector_ms), 2),
            "selector_p95_ms": round(_percentile(selector_ms, 95), 2),
            "sql_p50_ms": round(statistics.median(sql_ms), 2),
            "sql_p95_ms": round(_percentile(sql_ms, 95), 2),
            "example": qs[0],
        }
        rows.append(row)
        print(
            f"{key:<24} {row['selector_p50_ms']:>9.2f} {row['selector_p95_ms']:>9.2f}   "
            f"{row['sql_p50_ms']:>9.2f} {row['sql_p95_ms']:>9.2f}   {statements:>3}  {hits:>3}/{len(qs)}  e.g. {qs[0]}",
            flush=True,
        )
    return rows


def _dashboard(runs: int = 15) -> dict[str, Any]:
    """The recovery dashboard at this size: before (the three aggregations every page view used to
    run over all invoices), the beat task's snapshot computation, and after (a page view: one
    snapshot read plus drawing the charts and the template)."""
    from django.conf import settings
    from django.contrib.auth.models import AnonymousUser
    from django.template.loader import render_to_string
    from django.test import RequestFactory, override_settings

    from support import dashboard
    from support.services import dashboard_snapshot_refresh

    def timed(fn: Any, n: int) -> list[float]:
        times = []
        for _ in range(n):
            started = time.perf_counter()
            fn()
            times.append((time.perf_counter() - started) * 1000)
        return times

    def before() -> None:
        today = dashboard.timezone.localdate()
        days = [today - dashboard.dt.timedelta(days=29 - i) for i in range(30)]
        since = dashboard._day_end(days[0]) - dashboard.dt.timedelta(days=1)
        dashboard.past_due_by_day(days=days)
        dashboard.recovered_by_channel(since=since)
        dashboard.declines_by_code(since=since)

    request = RequestFactory().get("/support/dashboard/")
    request.user = AnonymousUser()

    def after() -> None:
        context = {**dashboard.recovery_dashboard(), "nav": "dashboard"}
        # Plain static storage: the bench never ran collectstatic, so there is no manifest.
        with override_settings(
            STORAGES={
                **settings.STORAGES,
                "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
            }
        ):
            render_to_string("support/dashboard.html", context, request=request)

    task = timed(dashboard_snapshot_refresh, 2)
    old = timed(before, 3)
    new = timed(after, runs)
    result = {
        "before_ms_p50": round(statistics.median(old), 1),
        "snapshot_task_ms": round(min(task), 1),
        "after_ms_p50": round(statistics.median(new), 1),
        "after_ms_max": round(max(new), 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(
        f"\nSupport dashboard: before (per-view scan) p50 {result['before_ms_p50']} ms; "
        f"snapshot task {result['snapshot_task_ms']} ms; after (page from snapshot) p50 "
        f"{result['after_ms_p50']} ms, max {result['after_ms_max']} ms; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="20,000 accounts, for a smoke run")
    parser.add_argument("--reload", action="store_true", help="load the data again even if it is there")
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--dashboard-only", action="store_true", help="time only the recovery dashboard")
    args = parser.parse_args()
    n = 20_000 if args.quick else args.accounts

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print(
            "support search benchmark: skipped, it needs PostgreSQL (set DATABASE_URL=postgres://…/bp_sup_bench)"
        )
        return 0
    # It truncates tables, so it works in a database of its own: DATABASE_URL's name + "_bench"
    # unless the name already says bench; created when missing and kept for the next run.
    parts = urlsplit(url)
    db_name = parts.path.lstrip("/")
    if "bench" not in db_name:
        db_name = f"{db_name}_bench"
        os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{db_name}"))
    import psycopg

    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db_name]).fetchone():
            admin.execute(f'CREATE DATABASE "{db_name}"')
    connection = _connect()

    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM accounts_billingaccount")
        present = cursor.fetchone()[0]
    if args.reload or present != n:
        print(f"Loading {n:,} accounts into {db_name} …", flush=True)
        _load(connection, n)
    else:
        print(f"Reusing the {present:,} accounts already in {db_name}", flush=True)

    rows: list[dict[str, Any]] = []
    if not args.dashboard_only:
        queries = _queries(connection, n, random.Random(args.seed))
        print(
            f"\nSupport search, {n:,} accounts, {RUNS_PER_KEY} queries per key, best of {REPEATS} each (ms)"
        )
        print(f"{'key':<24} {'selector':>9} {'':>9}   {'bare SQL':>9} {'':>9}   {'SQL':>3}  found")
        print(f"{'':<24} {'p50':>9} {'p95':>9}   {'p50':>9} {'p95':>9}")
        rows = _measure(connection, queries)
    dashboard_result = _dashboard()

    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0]
    out = ROOT / "bench" / "results" / "support_search.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "accounts": n,
                "queries_per_key": RUNS_PER_KEY,
                "postgres": version,
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                # The machine is shared: a high load average inflates the selector's Python time most.
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "cpus": os.cpu_count(),
                "note": "selector = support.selectors.support_search end to end; bare SQL = the same statements "
                "replayed on the raw psycopg connection in the same run; each query timed REPEATS times "
                "(alternating), best kept; p50/p95 over the queries",
                "repeats": REPEATS,
                "results": rows,
                "dashboard": dashboard_result,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"\nWritten to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
