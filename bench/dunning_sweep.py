"""Benchmark: the dunning sweep against the simulated gateway with real Celery workers.

Seeds N past-due invoices across M accounts (each account: one subscription on its own simulated-bank
card, N/M invoices due for a retry now), starts a real worker, and measures in the same run:

- the throughput of a no-op Celery task (broker + worker overhead, the ceiling for any task);
- one sweep over every due account, until every invoice is paid: charges per second;

and prints both and their ratio. It also checks that every invoice was charged exactly once.

Needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL). The benchmark works in its own database,
"<DATABASE_URL's name>_bench", created and dropped here (--keep keeps it).

    .venv/bin/python bench/dunning_sweep.py                      # 100,000 invoices / 20,000 accounts
    .venv/bin/python bench/dunning_sweep.py --invoices 2000 --accounts 400
    .venv/bin/python bench/dunning_sweep.py --quick              # CI smoke
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _admin_connect(url: str):
    import psycopg

    parts = urlsplit(url)
    return psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=20_000)
    # Charges wait on PostgreSQL more than they compute: two worker processes per CPU measured faster.
    parser.add_argument("--concurrency", type=int, default=2 * (os.cpu_count() or 1), help="worker processes")
    parser.add_argument(
        "--noop-tasks", type=int, default=0, help="no-op tasks to time (default: invoices/5, ≥500)"
    )
    parser.add_argument("--quick", action="store_true", help="500 invoices / 100 accounts, for a smoke run")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--timeout", type=float, default=6 * 3600)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below on kill
    if args.quick:
        args.invoices, args.accounts = 500, 100
    if args.invoices % args.accounts:
        parser.error("--invoices must be a multiple of --accounts")
    database_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not database_url.startswith("postgres") or not redis_url:
        print("bench/dunning_sweep.py needs DATABASE_URL (PostgreSQL) and REDIS_URL; skipped")
        return 0

    base = urlsplit(database_url)
    bench_db = f"{base.path.lstrip('/')}_bench"
    bench_url = urlunsplit(base._replace(path=f"/{bench_db}"))
    with _admin_connect(database_url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{bench_db}"')
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.pop("EMAIL_HOST", None)  # receipts go to the console mailer, whose output is discarded

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count, Q, Sum
    from django.utils import timezone

    from billing_portal.celery import app
    from dunning.services import dunning_sweep
    from dunning.tasks import noop
    from gateway_sim.models import SimCharge
    from subscriptions.models import Invoice
    from tests.dunning.helpers import seed_past_due
    from tests.dunning.realworker import start_worker, stop_worker

    app.conf.task_always_eager = False
    result: dict[str, object] = {
        "invoices": args.invoices,
        "accounts": args.accounts,
        "worker_concurrency": args.concurrency,
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
    }
    worker = None
    try:
        t = time.perf_counter()
        call_command("migrate", verbosity=0)
        print(f"seeding {args.invoices:,} past-due invoices across {args.accounts:,} accounts…", flush=True)
        ids = seed_past_due(
            accounts=args.accounts,
            invoices_per_account=args.invoices // args.accounts,
            prefix="bench",
            batch=1000,
        )
        result["seed_seconds"] = round(time.perf_counter() - t, 1)
        connection.close()

        import redis

        broker = redis.Redis.from_url(redis_url)
        queue = app.conf.task_default_queue or "celery"
        worker = start_worker(concurrency=args.concurrency)

        # Done when the queue is empty: with prefetch 1, at most `concurrency` tasks are still running
        # then. (Redis's "unacked" hash is no measure: ETA retries and messages of killed workers stay
        # there until the visibility timeout.) One round trip first, so worker start-up is not measured.
        def drained() -> bool:
            return broker.llen(queue) == 0

        noop.delay()
        _wait(drained, timeout=120)

        n = args.noop_tasks or max(500, args.invoices // 5)
        t = time.perf_counter()
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                noop.apply_async(producer=producer)
        _wait(drained, timeout=args.timeout)
        noop_seconds = time.perf_counter() - t
        result["noop_tasks"] = n
        result["noop_tasks_per_second"] = round(n / noop_seconds, 1)
        print(f"no-op task: {n:,} in {noop_seconds:.1f}s = {n / noop_seconds:,.0f}/s", flush=True)

        t = time.perf_counter()
        sweep = dunning_sweep(now=timezone.now())
        sweep_seconds = time.perf_counter() - t
        total = len(ids)

        def paid() -> int:
            return Invoice.objects.filter(status=Invoice.Status.PAID).count()

        last = [0.0]

        def report() -> None:
            if time.perf_counter() - last[0] > 10:
                last[0] = time.perf_counter()
                done = paid()
                print(f"  {done:,}/{total:,} paid after {time.perf_counter() - t:.0f}s", flush=True)

        ok = _wait(lambda: paid() == total, timeout=args.timeout, interval=0.5, tick=report)
        charge_seconds = time.perf_counter() - t
        charged = paid()
        result.update(
            sweep_enqueue_seconds=round(sweep_seconds, 2),
            accounts_enqueued=sweep.enqueued,
            batches=sweep.batches,
            charge_seconds=round(charge_seconds, 1),
            invoices_paid=charged,
            charges_per_second=round(charged / charge_seconds, 1),
        )
        result["ratio_charges_to_noop"] = round(
            float(result["charges_per_second"]) / float(result["noop_tasks_per_second"]), 4
        )
        # Exactly once: one succeeded bank charge per invoice, for what it owed; one succeeded attempt each.
        bank = SimCharge.objects.filter(idempotency_key__startswith="dunning:")
        per_invoice = set(
            Invoice.objects.annotate(
                ok=Count("allocations", filter=Q(allocations__attempt__status="succeeded"))
            ).values_list("ok", flat=True)
        )
        result["exactly_once"] = bool(
            ok
            and bank.count() == total
            and bank.filter(status="succeeded").count() == total
            and bank.aggregate(s=Sum("amount_minor"))["s"]
            == Invoice.objects.aggregate(s=Sum("total_minor"))["s"]
            and per_invoice == {1}
        )
        result["load_average_after"] = os.getloadavg()
        print(
            f"sweep: {charged:,} invoices charged in {charge_seconds:.1f}s = {charged / charge_seconds:,.1f} charges/s "
            f"(enqueueing {sweep.enqueued:,} accounts in {sweep.batches} batches took {sweep_seconds:.2f}s)"
        )
        print(
            f"no-op Celery task: {result['noop_tasks_per_second']:,}/s; "
            f"ratio charges/no-op: {result['ratio_charges_to_noop']}; exactly once: {result['exactly_once']}"
        )
    finally:
        if worker is not None:
            stop_worker(worker)
        connection.close()
        if not args.keep:
            with _admin_connect(database_url) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)')
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "dunning_sweep.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out / 'dunning_sweep.json'}")
    return 0 if result.get("exactly_once") else 1


def _wait(predicate, *, timeout: float, interval: float = 0.05, tick=None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        if predicate():
            return True
        time.sleep(interval)
    return False


if __name__ == "__main__":
    sys.exit(main())
