"""Benchmark: the dunning sweep against the simulated gateway with real Celery workers.

Seeds N past-due invoices across M accounts with COPY (bench/sweep_seed.py: each account has one
simulated-bank card carrying one to three past-due subscriptions and, on average, N/M invoices due for a
retry now), starts a real worker, and measures in one run, in this order:

- no-op/s: a no-op Celery task from a queue filled before the worker starts, timed over --noop-seconds
  (12 s; what is left then is dropped): broker and worker overhead, the ceiling for any task;
- then, --rounds times (5), on one slice of the accounts each (every fifth account):
  - the sweep: from the second round on, a VACUUM (ANALYZE) first (autovacuum's work: this machine's
    PostgreSQL runs without it), then one dunning_sweep() call, which hands out the slice's accounts (the
    other slices are held back with the product's own lease), timed from the vacuum until every invoice of
    the slice is paid (invoices paid/s, charges/s: succeeded charge attempts); then, untimed, until every
    receipt is sent and the queue is empty;
  - floor/s: the "floor charge" task (bench/sweep_tasks.py), one task per account like the sweep's
    account tasks, one floor charge for each charge the sweep made, for the same invoices (so a sweep that
    charges an account's invoices together is compared with a floor that does too), doing only the
    database work a charge cannot avoid: lock the account, insert the attempt, commit; lock the account,
    record the outcome, mark the invoices paid, write the audit row, commit.
  Taking turns, both see the same machine: on these shared CPUs speed drifts by tens of percent within
  minutes, and one whole sweep followed by one whole floor gave ratios from 0.39 to 0.55 for the same code.
  The totals give the ratio; each round's ratio and their median and range are printed too.

It prints charges/s ÷ floor/s and invoices paid/s ÷ no-op/s, and checks that every invoice was charged
exactly once. The queue is emptied before and after (no task of this run is left in Redis for the next).

Needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL; its database is emptied of Celery's queue, so
give the benchmark a Redis database number of its own). The benchmark works in its own database,
"<DATABASE_URL's name>_sweep" (or SWEEP_DATABASE_NAME), created and dropped here (--keep keeps it);
other benchmarks use other names, so they can run beside it.

--profile records the worker's processes with py-spy (`pip install py-spy`) during the first round's
sweep only, idle time included (wall time: waiting on PostgreSQL and Redis counts), and prints where it went
(bench/profile_summary.py).

    .venv/bin/python bench/dunning_sweep.py                      # 100,000 invoices / 20,000 accounts
    .venv/bin/python bench/dunning_sweep.py --invoices 10000 --accounts 2000
    .venv/bin/python bench/dunning_sweep.py --quick              # CI smoke
    .venv/bin/python bench/dunning_sweep.py --invoices 100000 --accounts 20000 --sweep-minutes 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
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
        "--noop-tasks", type=int, default=16000, help="no-op tasks to queue (aim: ≥10 s of work)"
    )
    parser.add_argument(
        "--noop-seconds", type=float, default=12.0, help="how long the no-op task is timed (at least 10)"
    )
    parser.add_argument(
        "--noop-fill-seconds", type=float, default=90.0, help="stop queueing no-ops after this"
    )
    parser.add_argument("--publishers", type=int, default=4, help="processes queueing the no-op tasks")
    parser.add_argument("--quick", action="store_true", help="500 invoices / 100 accounts, for a smoke run")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--timeout", type=float, default=6 * 3600)
    parser.add_argument(
        "--sweep-minutes",
        type=float,
        default=0,
        help="time the sweep for this long only (a partial run at a big size); 0: until all is paid",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="the sweep and the floor take turns this many times, each on its own slice of the accounts",
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the worker during the first round's sweep"
    )
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy", help="py-spy's path")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below on kill
    if args.quick:
        args.invoices, args.accounts, args.rounds = 500, 100, 2
    if args.invoices < args.accounts:
        parser.error("--invoices must be at least --accounts (each account has one or more)")
    database_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not database_url.startswith("postgres") or not redis_url:
        print("bench/dunning_sweep.py needs DATABASE_URL (PostgreSQL) and REDIS_URL; skipped")
        return 0

    base = urlsplit(database_url)
    bench_db = os.environ.get("SWEEP_DATABASE_NAME") or f"{base.path.lstrip('/')}_sweep"
    bench_url = urlunsplit(base._replace(path=f"/{bench_db}"))
    with _admin_connect(database_url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{bench_db}"')
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.pop("EMAIL_HOST", None)  # receipts go to the console mailer, whose output is discarded

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count, Q, Sum
    from django.utils import timezone

    from bench.sweep_seed import seed_sweep
    from bench.sweep_tasks import floor_charge
    from billing_portal.celery import app
    from dunning.services import due_account_ids, dunning_sweep
    from dunning.tasks import noop
    from gateway_sim.models import SimCharge
    from notifications.models import Notice
    from payments.models import PaymentAllocation, PaymentAttempt
    from subscriptions.models import Invoice
    from tests.dunning.realworker import start_worker, stop_worker

    app.conf.task_always_eager = False
    result: dict[str, object] = {
        "invoices": args.invoices,
        "accounts": args.accounts,
        "worker_concurrency": args.concurrency,
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
    }
    worker = profiler = None
    queue = app.conf.task_default_queue or "celery"
    try:
        t = time.perf_counter()
        call_command("migrate", verbosity=0)
        result["migrate_seconds"] = round(time.perf_counter() - t, 1)
        print(f"seeding {args.invoices:,} past-due invoices across {args.accounts:,} accounts…", flush=True)
        t = time.perf_counter()
        seeded = seed_sweep(invoices=args.invoices, accounts=args.accounts)
        result["seed_seconds"] = round(time.perf_counter() - t, 1)
        result["subscriptions"] = seeded.subscriptions
        result["max_invoices_per_account"] = seeded.max_invoices_per_account
        print(
            f"  {seeded.subscriptions:,} subscriptions, up to {seeded.max_invoices_per_account} invoices an "
            f"account, in {result['seed_seconds']}s",
            flush=True,
        )
        connection.close()

        import redis

        broker = redis.Redis.from_url(redis_url)
        _clean_queue(broker, queue)  # what an interrupted earlier run left would be run by this worker

        # The no-op tasks go into the queue before the worker starts: publishing one costs a broker
        # round trip (several ms on a busy machine), so a producer racing the worker would measure
        # itself. Several publisher processes fill it for up to --noop-fill-seconds.
        _prefill(app, noop, args.noop_tasks, publishers=args.publishers, seconds=args.noop_fill_seconds)
        n = broker.llen(queue)
        connection.close()

        def start() -> subprocess.Popen:
            """The worker as production runs it (DEBUG off: no query log kept per query), with the floor task."""
            return start_worker(
                concurrency=args.concurrency,
                extra_env={"DEBUG": "0"},
                extra_args=["--include", "bench.sweep_tasks"],
            )

        worker = start()

        def drained() -> bool:
            return broker.llen(queue) == 0

        # Timed from the first task taken (worker start-up is not measured) until the queue is empty
        # (with prefetch 1, at most `concurrency` tasks are still running then).
        # The window is --noop-seconds (or until the queue is empty, flagged when that came sooner);
        # what is left then is dropped.
        _wait(lambda: broker.llen(queue) < n, timeout=300, interval=0.01)
        t = time.perf_counter()
        left = broker.llen(queue)
        _wait(drained, timeout=args.noop_seconds, interval=0.05)
        noop_seconds = time.perf_counter() - t
        done = left - broker.llen(queue)
        _clean_queue(broker, queue)
        result["noop_tasks"] = done
        result["noop_seconds"] = round(noop_seconds, 1)
        result["noop_tasks_per_second"] = round(done / noop_seconds, 1)
        result["load_average_noop"] = os.getloadavg()
        print(f"no-op task: {done:,} in {noop_seconds:.1f}s = {done / noop_seconds:,.0f}/s", flush=True)
        if noop_seconds < 10:
            print("  (less than 10 s: raise --noop-tasks for a steadier figure)", flush=True)
        time.sleep(3)  # the tasks taken before the queue was dropped finish

        def charges_made(account_ids: list[int] | None = None) -> int:
            made = PaymentAttempt.objects.filter(status=PaymentAttempt.Status.SUCCEEDED).exclude(
                idempotency_key__startswith="floor:"
            )
            return (made if account_ids is None else made.filter(account_id__in=account_ids)).count()

        def _floor(account_ids: list[int], *, timeout: float) -> tuple[int, float, bool]:
            """One floor charge per charge the sweep made for these accounts, for the same invoices, one
            task per account (in a partial round: the charges that succeeded). Returns (done, seconds, ok)."""
            groups: dict[int, dict[int, list[int]]] = {}
            charge_of: dict[int, tuple[int, int]] = {}
            for account_id, attempt_id, method_id, amount, invoice_id in (
                PaymentAllocation.objects.filter(
                    attempt__status=PaymentAttempt.Status.SUCCEEDED, attempt__account_id__in=account_ids
                )
                .exclude(attempt__idempotency_key__startswith="floor:")
                .order_by("attempt_id", "invoice_id")
                .values_list(
                    "attempt__account_id",
                    "attempt_id",
                    "attempt__payment_method_id",
                    "attempt__amount_minor",
                    "invoice_id",
                )
            ):
                groups.setdefault(account_id, {}).setdefault(attempt_id, []).append(invoice_id)
                charge_of[attempt_id] = (method_id, amount)
            total = sum(len(g) for g in groups.values())
            done = PaymentAttempt.objects.filter(
                idempotency_key__startswith="floor:",
                status=PaymentAttempt.Status.SUCCEEDED,
                account_id__in=account_ids,
            )
            t = time.perf_counter()
            with app.producer_or_acquire() as producer:
                for account_id, attempts in groups.items():
                    floor_charge.apply_async(
                        (account_id, [(*charge_of[a], invoices) for a, invoices in attempts.items()]),
                        producer=producer,
                    )
            stalled = _Stall(done.count, seconds=30)
            ok = _wait(
                lambda: done.count() == total or (drained() and stalled()), timeout=timeout, relative=True
            )
            seconds = time.perf_counter() - t
            n = done.count()
            return n, seconds, ok and n == total

        # The sweep and the floor take turns, each round on every --rounds-th account (why: the docstring).
        accounts = due_account_ids(now=timezone.now())
        rounds = max(1, min(args.rounds, len(accounts)))
        slices = [accounts[r::rounds] for r in range(rounds)]
        window = args.sweep_minutes * 60 / rounds if args.sweep_minutes else args.timeout
        result["rounds"] = rounds
        per_round: list[dict[str, Any]] = []
        swept = floored = True  # every round's invoices paid; every round's floor charges made
        for r, accounts_r in enumerate(slices):
            _hold(later=[a for s in slices[r + 1 :] for a in s], now=accounts_r)
            if args.profile and r == 0:
                profiler = _profile_start(args.py_spy, worker.pid)
            mine = Invoice.objects.filter(account_id__in=accounts_r)
            owed = mine.count()
            t = time.perf_counter()
            if r:
                # What autovacuum would do (this machine's PostgreSQL runs without it; ARCHITECTURE.md): clear
                # the dead rows the last round left and refresh the statistics. Timed against the sweep, which
                # left most of them.
                with connection.cursor() as cursor:
                    cursor.execute("VACUUM (ANALYZE)")
            vacuum_seconds = time.perf_counter() - t
            sweep = dunning_sweep(now=timezone.now())
            enqueue_seconds = time.perf_counter() - t - vacuum_seconds

            def paid(mine=mine) -> int:
                return mine.filter(status=Invoice.Status.PAID).count()

            ok = _wait(lambda owed=owed: paid() == owed, timeout=window, relative=True)
            sweep_seconds = time.perf_counter() - t
            paid_r, charges_r = paid(), charges_made(accounts_r)
            load_sweep = os.getloadavg()
            if profiler is not None:
                _profile_stop(profiler, result)
                profiler = None
            if not ok:
                # A partial run: stop the worker, then drop what is still queued (the accounts not reached).
                print(
                    f"round {r + 1}: timed for {sweep_seconds:.0f}s only (--sweep-minutes); {paid_r:,} of "
                    f"{owed:,} invoices paid by {charges_r:,} charges; no more rounds",
                    flush=True,
                )
                swept = False
                _stop_gracefully(worker)  # it finishes the account runs it has begun
                worker = None
                _clean_queue(broker, queue)
                worker = start()
                time.sleep(5)  # start-up is not measured
            else:
                # Untimed: every receipt of the round sent and the queue empty, so the floor that follows
                # does not share the worker with them.
                _wait(
                    lambda: drained() and not Notice.objects.filter(status=Notice.Status.QUEUED).exists(),
                    timeout=args.timeout,
                    interval=0.25,
                )
            floor_r, floor_seconds, floor_ok = _floor(accounts_r, timeout=args.timeout)
            floored = floored and floor_ok
            row = {
                "accounts": len(accounts_r),
                "invoices_paid": paid_r,
                "charges": charges_r,
                "sweep_seconds": round(sweep_seconds, 3),
                "enqueue_seconds": round(enqueue_seconds, 3),
                "vacuum_seconds": round(vacuum_seconds, 3),
                "enqueued": sweep.enqueued,
                "floor_charges": floor_r,
                "floor_seconds": round(floor_seconds, 3),
                "charges_per_second": round(charges_r / sweep_seconds, 1),
                "floor_per_second": round(floor_r / floor_seconds, 1),
                "ratio": round((charges_r / sweep_seconds) / (floor_r / floor_seconds), 3)
                if floor_r
                else None,
                "load_average_sweep": load_sweep,
                "load_average_floor": os.getloadavg(),
            }
            per_round.append(row)
            print(
                f"round {r + 1}/{rounds}: {paid_r:,} invoices paid by {charges_r:,} charges in "
                f"{sweep_seconds:.1f}s = {row['charges_per_second']:,}/s; floor {floor_r:,} in "
                f"{floor_seconds:.1f}s = {row['floor_per_second']:,}/s; ratio {row['ratio']}; load "
                f"{_load(row['load_average_sweep'])} sweep, {_load(row['load_average_floor'])} floor",
                flush=True,
            )
            if not ok:
                break
        totals = {key: sum(row[key] for row in per_round) for key in _SUMMED}
        ratios = sorted(row["ratio"] for row in per_round if row["ratio"] is not None)
        result.update(
            sweep_complete=swept,
            floor_complete=floored,
            per_round=per_round,
            sweep_enqueue_seconds=round(totals["enqueue_seconds"], 2),
            sweep_vacuum_seconds=round(totals["vacuum_seconds"], 2),
            charge_seconds=round(totals["sweep_seconds"], 1),
            invoices_paid=totals["invoices_paid"],
            invoices_paid_per_second=round(totals["invoices_paid"] / totals["sweep_seconds"], 1),
            charges=totals["charges"],
            charges_per_second=round(totals["charges"] / totals["sweep_seconds"], 1),
            floor_charges=totals["floor_charges"],
            floor_seconds=round(totals["floor_seconds"], 1),
            floor_charges_per_second=round(totals["floor_charges"] / totals["floor_seconds"], 1),
            ratio_per_round_median=round(statistics.median(ratios), 3) if ratios else None,
            ratio_per_round_range=[ratios[0], ratios[-1]] if ratios else None,
            load_average_sweep=per_round[-1]["load_average_sweep"],
            load_average_floor=per_round[-1]["load_average_floor"],
        )
        # Exactly once: one succeeded bank charge per key and per paid invoice, for what the paid
        # invoices owed; no invoice paid by two attempts.
        bank = SimCharge.objects.filter(idempotency_key__startswith="dunning:")
        paid_invoices = Invoice.objects.filter(status=Invoice.Status.PAID)
        per_invoice = set(
            paid_invoices.annotate(
                ok=Count("allocations", filter=Q(allocations__attempt__status="succeeded"))
            ).values_list("ok", flat=True)
        )
        result["check"] = {
            "bank_charges": bank.count(),
            "bank_succeeded": bank.filter(status="succeeded").count(),
            "attempts_succeeded": charges_made(),
            "attempts_in_flight": PaymentAttempt.objects.filter(status__in=PaymentAttempt.IN_FLIGHT).count(),
            "paid_invoices_by_allocations": sorted(per_invoice),
        }
        result["exactly_once"] = bool(
            bank.filter(status="succeeded").count() == bank.count() == charges_made()
            and (bank.aggregate(s=Sum("amount_minor"))["s"] or 0)
            == (paid_invoices.aggregate(s=Sum("total_minor"))["s"] or 0)
            and per_invoice <= {1}
            and (per_invoice == {1} or not swept)
        )
        if not result["exactly_once"]:
            print(f"exactly once: NOT shown: {result['check']}", flush=True)
        result["ratio_charges_to_floor"] = round(
            float(result["charges_per_second"]) / float(result["floor_charges_per_second"]), 3
        )
        result["ratio_invoices_paid_to_noop"] = round(
            float(result["invoices_paid_per_second"]) / float(result["noop_tasks_per_second"]), 4
        )
        result["load_average_after"] = os.getloadavg()
        result["receipts"] = Notice.objects.filter(kind=Notice.Kind.PAYMENT_RECEIVED).count()
        result["receipts_sent"] = not Notice.objects.filter(status=Notice.Status.QUEUED).exists()
        print(
            f"sweep: {totals['invoices_paid']:,} invoices paid by {totals['charges']:,} charges in "
            f"{totals['sweep_seconds']:.1f}s over {len(per_round)} round(s) (enqueueing took "
            f"{totals['enqueue_seconds']:.2f}s, vacuuming between rounds {totals['vacuum_seconds']:.2f}s); "
            f"floor: {totals['floor_charges']:,} in {totals['floor_seconds']:.1f}s",
            flush=True,
        )
        print(
            f"invoices paid/s {result['invoices_paid_per_second']}, charges/s {result['charges_per_second']}, "
            f"no-op/s {result['noop_tasks_per_second']}, floor/s {result['floor_charges_per_second']}; "
            f"charges/floor {result['ratio_charges_to_floor']} (goal ≥ 0.5; per round: median "
            f"{result['ratio_per_round_median']}, range {result['ratio_per_round_range']}), invoices paid/no-op "
            f"{result['ratio_invoices_paid_to_noop']} (goal ≥ 0.25); exactly once: {result['exactly_once']}; "
            f"load average {_load(result['load_average_before'])} before, "
            f"{_load(result['load_average_noop'])} no-op, {_load(result['load_average_sweep'])} last sweep, "
            f"{_load(result['load_average_floor'])} last floor"
        )
    finally:
        if profiler is not None:
            _profile_stop(profiler, result)
        if worker is not None:
            stop_worker(worker)
        if redis_url:
            import redis

            _clean_queue(redis.Redis.from_url(redis_url), queue)
        connection.close()
        if not args.keep:
            with _admin_connect(database_url) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)')
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = "dunning_sweep" if args.invoices == 100_000 or args.quick else f"dunning_sweep_{args.invoices}"
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out / f'{name}.json'}")
    return 0 if result.get("exactly_once") else 1


def _stop_gracefully(worker: subprocess.Popen, timeout: float = 300) -> None:
    """Warm shutdown: the worker finishes the tasks it has begun (an account run on a loaded machine can
    take longer than the test helper's 10 s before it kills), so the check sees no charge cut short."""
    from tests.dunning.realworker import kill_worker

    with contextlib.suppress(ProcessLookupError):
        # The main process only: a SIGTERM to the whole group also reaches the pool children, which
        # then die mid-charge (their attempts left pending for reconciliation, as after a crash).
        os.kill(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_worker(worker)


# A round's figures that add up over the rounds to the run's.
_SUMMED = (
    "invoices_paid",
    "charges",
    "floor_charges",
    "sweep_seconds",
    "enqueue_seconds",
    "vacuum_seconds",
    "floor_seconds",
)


def _load(value: object) -> str:
    return " ".join(f"{x:.2f}" for x in value) if isinstance(value, (tuple, list)) else str(value)


PROFILE = ROOT / "bench" / "results" / "dunning_sweep_profile.txt"


def _profile_start(py_spy: str, pid: int) -> subprocess.Popen:
    """py-spy on the worker and its pool processes, idle (waiting) samples included: wall time."""
    PROFILE.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            *(py_spy, "record", "--pid", str(pid), "--subprocesses", "--idle", "--nonblocking"),
            *("--rate", "100", "--format", "raw", "--output", str(PROFILE)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _profile_stop(profiler: subprocess.Popen, result: dict[str, object]) -> None:
    from bench.profile_summary import summary

    profiler.send_signal(signal.SIGINT)
    try:
        profiler.wait(timeout=60)
    except subprocess.TimeoutExpired:
        profiler.kill()
    if PROFILE.exists():
        result["profile"] = summary(PROFILE.read_text())
        print(json.dumps(result["profile"], indent=2), flush=True)


def _publish(count: int, deadline: float, results) -> None:
    """A forked publisher: queue `count` no-ops, report how many, and leave at once (os._exit): the
    exit handlers it inherited (the parent's connections, kombu's pools) once hung a publisher forever."""
    sent = 0
    try:
        from billing_portal.celery import app
        from dunning.tasks import noop

        app._pool = None  # a forked process needs broker connections of its own
        app.amqp._producer_pool = None
        with app.producer_or_acquire() as producer:
            while sent < count and time.monotonic() < deadline:
                noop.apply_async(producer=producer)
                sent += 1
    finally:
        results.put(sent)
        results.close()
        results.join_thread()
        os._exit(0)


def _prefill(app, noop, total: int, *, publishers: int, seconds: float) -> int:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    deadline = time.monotonic() + seconds
    share = [total // publishers + (i < total % publishers) for i in range(publishers)]
    results = ctx.Queue()
    procs = [ctx.Process(target=_publish, args=(k, deadline, results)) for k in share]
    for proc in procs:
        proc.start()
    sent = 0
    for _ in procs:
        try:
            sent += results.get(timeout=seconds + 30)
        except Exception:  # a publisher that died without a word: its tasks are counted by the queue
            break
    for proc in procs:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=10)
    print(f"queued {sent:,} no-op tasks", flush=True)
    return sent


class _Stall:
    """True once `progress()` has not changed for `seconds` (a failing task must not hang the run)."""

    def __init__(self, progress, *, seconds: float) -> None:
        self.progress, self.seconds = progress, seconds
        self.value, self.since = None, time.monotonic()

    def __call__(self) -> bool:
        value = self.progress()
        if value != self.value:
            self.value, self.since = value, time.monotonic()
        return time.monotonic() - self.since > self.seconds


def _clean_queue(broker, queue: str) -> None:
    """Drop this benchmark's messages: the queue, and kombu's record of delivered-but-unacknowledged
    ones (which it would hand out again after the visibility timeout)."""
    broker.delete(queue, "unacked", "unacked_index", "unacked_mutex")


def _wait(predicate, *, timeout: float, interval: float = 0.05, relative: bool = False) -> bool:
    """Poll until `predicate()`. `relative`: a timed window, polled every 1/50 of the time it has run
    (at least 0.05 s), so finding the end late adds at most 2 % to it and a long window is not slowed by
    polls on the same CPUs."""
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(max(interval, (time.monotonic() - start) / 50) if relative else interval)
    return False


def _hold(*, later: list[int], now: list[int]) -> None:
    """Before a round: lease the later rounds' accounts (dunning_sweep() skips an account leased within
    DUNNING_ENQUEUE_LEASE) and release this round's."""
    from django.utils import timezone

    from dunning.models import AccountSweep

    at = timezone.now()
    rows = [AccountSweep(account_id=a, enqueued_at=at) for a in later]
    rows += [AccountSweep(account_id=a, enqueued_at=None) for a in now]
    AccountSweep.objects.bulk_create(
        rows, batch_size=5000, update_conflicts=True, unique_fields=["account"], update_fields=["enqueued_at"]
    )


if __name__ == "__main__":
    sys.exit(main())
