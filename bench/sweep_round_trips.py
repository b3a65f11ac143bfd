"""Where one dunning account run spends its wall time, statement by statement, on PostgreSQL.

Seeds one account (bench/sweep_seed.py shape: one card, --invoices past-due invoices) in a database of its
own ("<DATABASE_URL's name>_rt", dropped afterwards), runs account_dunning_run for it once in this process
(the receipts' delivery task is not run: it goes to another worker), and prints:
- every round trip (statements, BEGIN and COMMIT) grouped by the innermost line of our code that sent it,
  with its count and the time spent waiting for PostgreSQL;
- the run's wall time split into time in the database driver and time in Python (ours and Django's).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/billing_x .venv/bin/python bench/sweep_round_trips.py
    … --invoices 5 --repeat 20     # 20 accounts, each run once; the table shows the mean per run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OURS = {
    *("accounts", "audit", "billing_portal", "dunning", "gateway_sim", "notifications", "payments"),
    "subscriptions",
}


def _where() -> str:
    """The innermost frame of our code on the stack (not Django's, not this script's)."""
    frame: FrameType | None = sys._getframe(2)
    root = f"{ROOT}/"
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(root) and path[len(root) :].split("/", 1)[0] in OURS:
            return f"{path[len(root) :]}:{frame.f_lineno} {frame.f_code.co_name}"
        frame = frame.f_back
    return "(elsewhere)"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invoices", type=int, default=1, help="past-due invoices of the account")
    parser.add_argument("--repeat", type=int, default=10, help="accounts run, one after the other")
    parser.add_argument("--cprofile", type=int, default=0, help="print the N costliest functions (cProfile)")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        print("bench/sweep_round_trips.py needs DATABASE_URL (PostgreSQL); skipped")
        return 0
    import psycopg

    base = urlsplit(url)
    name = f"{base.path.lstrip('/')}_rt"
    admin_url = urlunsplit(base._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = urlunsplit(base._replace(path=f"/{name}"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["CONN_MAX_AGE"] = "600"
    os.environ.pop("EMAIL_HOST", None)
    try:
        import django

        django.setup()
        from unittest import mock

        from django.core.management import call_command
        from django.db import DEFAULT_DB_ALIAS, connection, connections
        from django.utils import timezone

        from bench.sweep_seed import seed_sweep
        from dunning.services import account_dunning_run
        from subscriptions.models import Invoice

        call_command("migrate", verbosity=0)
        # One warm-up account, then --repeat counted with the round trips, then --repeat timed bare.
        seed_sweep(invoices=args.invoices * (2 * args.repeat + 1), accounts=2 * args.repeat + 1, even=True)
        accounts = sorted(set(Invoice.objects.values_list("account_id", flat=True)))
        quiet = (  # the receipts' delivery task goes to another worker: not queued here
            mock.patch("notifications.services.notices_enqueue_delivery", return_value=True),
            mock.patch("notifications.services.notice_enqueue_delivery", return_value=True),
        )
        with quiet[0], quiet[1]:
            account_dunning_run(account_id=accounts[0], now=timezone.now())  # warm: imports, templates
        accounts, bare = accounts[1 : args.repeat + 1], accounts[args.repeat + 1 :]

        trips: dict[str, list[float]] = defaultdict(list)
        in_driver = [0.0]

        def execute(execute, sql, params, many, context):
            t = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                spent = time.perf_counter() - t
                in_driver[0] += spent
                trips[f"{_where()}  [{sql.split()[0].upper()}]"].append(spent)

        wrapper = connections[DEFAULT_DB_ALIAS]
        real_commit = type(wrapper).commit

        def commit(self):
            t = time.perf_counter()
            try:
                return real_commit(self)
            finally:
                spent = time.perf_counter() - t
                in_driver[0] += spent
                trips[f"{_where()}  [COMMIT]"].append(spent)

        with (
            quiet[0],
            quiet[1],
            mock.patch.object(type(wrapper), "commit", commit),
            connection.execute_wrapper(execute),
        ):
            t = time.perf_counter()
            for account_id in accounts:
                account_dunning_run(account_id=account_id, now=timezone.now())
            wall = time.perf_counter() - t
        # The same work without the counting above (it costs a little), and optionally under cProfile.
        import cProfile
        import pstats

        profile = cProfile.Profile() if args.cprofile else None
        with quiet[0], quiet[1]:
            t = time.perf_counter()
            if profile is not None:
                profile.enable()
            for account_id in bare:
                account_dunning_run(account_id=account_id, now=timezone.now())
            if profile is not None:
                profile.disable()
            bare_wall = (time.perf_counter() - t) / len(bare)
        runs = len(accounts)
        print(f"\none account run with {args.invoices} past-due invoice(s), mean of {runs} runs")
        print(f"{'round trips':>11} {'ms':>7}  sent by (innermost line of our code) [first word]")
        rows = sorted(trips.items(), key=lambda kv: kv[0])
        for where, times in rows:
            print(f"{len(times) / runs:11.1f} {1000 * sum(times) / runs:7.2f}  {where}")
        count = sum(len(t) for t in trips.values()) / runs
        print(
            f"\n{count:.1f} round trips a run (BEGIN is sent by psycopg with the first statement of a transaction"
            f" and timed with it, but not counted: add one per COMMIT); wall {1000 * wall / runs:.1f} ms a run: "
            f"{1000 * in_driver[0] / runs:.1f} ms in the database driver, "
            f"{1000 * (wall - in_driver[0]) / runs:.1f} ms in Python; without the counting: "
            f"{1000 * bare_wall:.1f} ms a run{' (under cProfile)' if profile else ''}; "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        if profile is not None and os.environ.get("PROFILE_OUT"):  # for pstats' callers and callees
            profile.dump_stats(os.environ["PROFILE_OUT"])
        if profile is not None:
            pstats.Stats(profile).sort_stats("cumulative").print_stats(
                os.environ.get("PROFILE_FILTER", ""), args.cprofile
            )
    finally:
        from django.db import connection as conn

        conn.close()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
