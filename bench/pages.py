"""Each customer page's SQL query count and median server time, for an account with one subscription
and for one with 1,000 subscriptions, 10,000 invoices and 1,000 of them past due (seed_large), and their
ratio. Besides the pages: the Settle balance pane (with the valid card chosen, so it lists the past-due
invoices of both cards) and the support console's account view.

Runs against its own database: SQLite at var/bench/portal.sqlite3 unless DATABASE_URL is set.
Results are printed as a table and written to bench/results/pages.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _prepare_database(quick: bool) -> None:
    env = os.environ.copy()
    env.setdefault("DEBUG", "0")
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    # Production settings serve hashed static files from a manifest.
    subprocess.run([*manage, "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    sizes = ["--subscriptions", "100", "--invoices", "1000", "--small-accounts", "20"] if quick else []
    subprocess.run([*manage, "seed_large", *sizes], cwd=ROOT, env=env, check=True)


def _pages(big, small):
    """(label, url for the big account, url for the small account) of every customer page."""
    from django.urls import reverse

    from subscriptions.models import Invoice

    def both(name, **kwargs):
        return (
            reverse(name, kwargs={"account_id": big.pk, **kwargs}),
            reverse(name, kwargs={"account_id": small.pk, **kwargs}),
        )

    big_invoice = Invoice.objects.filter(account=big).order_by("-pk").first()
    small_invoice = Invoice.objects.filter(account=small).order_by("-pk").first()
    pages = [
        ("Home", *both("accounts:home")),
        ("Your products", *both("subscriptions:products")),
        ("Invoices", *both("subscriptions:invoices")),
        (
            "Invoice detail",
            reverse(
                "subscriptions:invoice_detail", kwargs={"account_id": big.pk, "number": big_invoice.number}
            ),
            reverse(
                "subscriptions:invoice_detail",
                kwargs={"account_id": small.pk, "number": small_invoice.number},
            ),
        ),
        ("Payment methods", *both("payments:methods")),
        ("Billing notifications", *both("accounts:notifications")),
        ("Settle balance pane", _settle_url(big), _settle_url(small)),
    ]
    return pages


def _settle_url(account) -> str:
    """The pane of the declined card with the account's valid card chosen: both cards' past-due lists."""
    from django.urls import reverse

    from payments.models import PaymentMethod

    cards = PaymentMethod.objects.filter(account=account)
    failed = cards.get(status=PaymentMethod.Status.DECLINED)
    chosen = cards.get(status=PaymentMethod.Status.VALID)
    return reverse("payments:settle", args=[account.pk, failed.pk]) + f"?method={chosen.pk}"


def _support_client():
    from django.test import Client

    from accounts.models import User
    from support.services import support_staff_group

    agent, _ = User.objects.get_or_create(email="agent@large-bench.example", defaults={"is_staff": True})
    agent.groups.add(support_staff_group())
    client = Client()
    client.force_login(agent)
    return client


def _measure(clients_urls, runs: int) -> list[tuple[int, float]]:
    """Median time and query count per (client, url), runs interleaved so drift hits all alike."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for client, url in clients_urls:
        for _ in range(2):  # warm caches: templates, the connection
            assert client.get(url).status_code == 200, url
    times: list[list[float]] = [[] for _ in clients_urls]
    queries = [0 for _ in clients_urls]
    for _ in range(runs):
        for i, (client, url) in enumerate(clients_urls):
            with CaptureQueriesContext(connection) as captured:
                start = time.perf_counter()
                response = client.get(url)
                times[i].append(time.perf_counter() - start)
            assert response.status_code == 200, url
            queries[i] = len(captured.captured_queries)
    return [(queries[i], statistics.median(times[i]) * 1000) for i in range(len(clients_urls))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=25)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        os.environ["VAR_DIR"] = str(ROOT / "var" / "bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")  # the test client speaks plain HTTP
    _prepare_database(args.quick)

    import django

    django.setup()
    from django.test import Client

    from accounts.models import BillingAccount, Membership, Role, User

    big = BillingAccount.objects.get(domain="large-big.example")
    small = BillingAccount.objects.get(domain="large-small-00000.example")
    rows = []
    big_client, small_client = Client(), Client()
    big_client.force_login(User.objects.get(email="admin@large-big.example"))
    # A member of this one account only, so both users see the same shell (a one-entry switcher).
    solo, _ = User.objects.get_or_create(email="bench@large-small-00000.example")
    Membership.objects.get_or_create(user=solo, account=small, defaults={"role": Role.ADMIN})
    small_client.force_login(solo)
    runs = 5 if args.quick else args.runs
    from django.urls import reverse

    agent = _support_client()
    cases = [
        (label, big_client, big_url, small_client, small_url)
        for label, big_url, small_url in _pages(big, small)
    ]
    cases.append(
        (
            "Support account view",
            agent,
            reverse("support:account", args=[big.pk]),
            agent,
            reverse("support:account", args=[small.pk]),
        )
    )
    for label, big_c, big_url, small_c, small_url in cases:
        (small_q, small_ms), (big_q, big_ms) = _measure([(small_c, small_url), (big_c, big_url)], runs)
        rows.append(
            {
                "page": label,
                "queries_small": small_q,
                "queries_large": big_q,
                "median_ms_small": round(small_ms, 2),
                "median_ms_large": round(big_ms, 2),
                "ratio": round(big_ms / small_ms, 2) if small_ms else None,
            }
        )
    subs = big.subscriptions.count()
    invoices = big.invoices.count()
    past_due = big.invoices.filter(status="past_due").count()
    print(
        f"\nSmall account: 1 subscription; large account: {subs} subscriptions, {invoices} invoices "
        f"({past_due} past due); {runs} runs; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"{'page':<24}{'queries 1':>10}{'queries N':>10}{'ms 1':>10}{'ms N':>10}{'ratio':>8}")
    for r in rows:
        print(
            f"{r['page']:<24}{r['queries_small']:>10}{r['queries_large']:>10}"
            f"{r['median_ms_small']:>10.2f}{r['median_ms_large']:>10.2f}{r['ratio']:>8.2f}"
        )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "pages.json").write_text(
        json.dumps(
            {
                "subscriptions_large": subs,
                "invoices_large": invoices,
                "past_due_invoices_large": past_due,
                "runs": runs,
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "pages": rows,
            },
            indent=2,
        )
    )
    print(f"\nwritten to {out / 'pages.json'}")
    flat = all(r["queries_small"] == r["queries_large"] for r in rows)
    print("query counts flat:", "yes" if flat else "NO")
    bounded = all(r["queries_large"] <= 12 for r in rows)
    print("at most 12 queries:", "yes" if bounded else "NO")
    return 0 if flat and bounded else 1


if __name__ == "__main__":
    sys.exit(main())
