"""Throughput of customer pages under load, against two floors measured in the same run.

Runs gunicorn as docker-compose.yml does (sync workers, --no-control-socket) on PostgreSQL with
bench/settings.py, which adds two floor views that exist only there (bench/urls.py):

- bare:  the middleware stack, no session, no database;
- shell: authenticate the session, load the membership, render the empty admin-center shell: what
  every customer page does before its own work.

Then, interleaved in rounds (every URL once per round, a short wrk run each, the order rotating), the
requests/s of Home, Your products, Invoices and the Settle balance pane for Contoso (seed_demo) and for
the 1,000-subscription account (seed_large), each as a ratio to the shell floor of the same round;
the medians over the rounds are reported. Loopback only; bounded: rounds x URLs x seconds.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/billing_perf_pages .venv/bin/python bench/load.py
    ... bench/load.py --conn-max-age 0     # the same with a new database connection per request

Needs `wrk` (Debian package). Results: bench/results/load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database_ensure(url: str) -> None:
    """Create DATABASE_URL's database when it is missing (the bench's own; kept for the next run)."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _prepare(env: dict[str, str], quick: bool, *, seed: bool) -> None:
    _database_ensure(env["DATABASE_URL"])
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([*manage, "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    if not seed:
        return
    subprocess.run([*manage, "seed_demo", "-v0"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    sizes = ["--subscriptions", "100", "--invoices", "1000", "--small-accounts", "20"] if quick else []
    subprocess.run([*manage, "seed_large", *sizes], cwd=ROOT, env=env, check=True)


def _targets() -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """(label, path, session key) of every URL, and the session cookie per user."""
    from django.test import Client
    from django.urls import reverse

    from accounts.models import BillingAccount, User
    from payments.models import PaymentMethod

    def session(email: str) -> str:
        client = Client()
        client.force_login(User.objects.get(email=email))
        return client.cookies["sessionid"].value

    contoso = BillingAccount.objects.get(domain="contoso.example")
    big = BillingAccount.objects.get(domain="large-big.example")
    cookies = {"contoso": session("admin@contoso.example"), "big": session("admin@large-big.example")}

    def settle(account: BillingAccount) -> str:
        cards = PaymentMethod.objects.filter(account=account).exclude(status="detached")
        failed = cards.filter(status__in=["declined", "expired"]).order_by("pk").first()
        assert failed is not None, f"{account.name} has no declined card"
        chosen = cards.filter(status="valid").order_by("-is_default", "pk").first()
        url = reverse("payments:settle", args=[account.pk, failed.pk])
        return url + (f"?method={chosen.pk}" if chosen else "")

    targets = [
        ("bare floor", reverse("bench_bare"), "contoso"),
        ("shell floor", reverse("bench_shell", args=[contoso.pk]), "contoso"),
    ]
    for key, account in (("contoso", contoso), ("big", big)):
        name = "Contoso" if key == "contoso" else "1,000 subs"
        targets += [
            (f"{name}: Home", reverse("accounts:home", args=[account.pk]), key),
            (f"{name}: Your products", reverse("subscriptions:products", args=[account.pk]), key),
            (f"{name}: Invoices", reverse("subscriptions:invoices", args=[account.pk]), key),
            (f"{name}: Settle pane", settle(account), key),
        ]
    return targets, cookies


def _wrk(url: str, cookie: str, seconds: int, connections: int) -> tuple[float, int]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-H",
            f"Cookie: sessionid={cookie}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    if rps is None:
        raise RuntimeError(f"wrk said:\n{out}")
    if errors:
        print(f"    {errors.group(0)}", flush=True)
    return float(rps.group(1)), int(bad.group(1)) if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3, help="wrk duration per URL and round")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers (docker-compose: 3)")
    parser.add_argument("--connections", type=int, default=0, help="wrk connections (default: workers)")
    parser.add_argument(
        "--conn-max-age", default="", help="CONN_MAX_AGE for gunicorn (default: the settings')"
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--reuse-data",
        action="store_true",
        help="keep the data of an earlier run (migrate and collectstatic only): for runs back to back",
    )
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")) or not shutil.which("wrk"):
        print("load test: skipped, it needs PostgreSQL (DATABASE_URL) and wrk (apt-get install wrk)")
        return 0
    if args.quick:
        args.rounds, args.seconds = 2, 1
    connections = args.connections or args.workers
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_hex(40),
        "ALLOWED_HOSTS": "127.0.0.1,testserver",
        "SECURE_SSL_REDIRECT": "0",
        "LOG_LEVEL": "WARNING",
        "AXES_ENABLED": "0",
    }
    if args.conn_max_age != "":
        env["CONN_MAX_AGE"] = args.conn_max_age
    env.pop("EMAIL_HOST", None)
    _prepare(env, args.quick, seed=not args.reuse_data)
    os.environ.update(env)

    import django

    django.setup()
    from django.db import connection

    targets, cookies = _targets()
    connection.close()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "billing_portal.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--no-control-socket",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    results: dict[str, list[float]] = {label: [] for label, _p, _c in targets}
    ratios: dict[str, list[float]] = {label: [] for label, _p, _c in targets}
    loads: list[list[float]] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/__bench__/bare/", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.3)
        for label, path, who in targets:  # every URL answers 200 (not a sign-in redirect) before timing
            request = urllib.request.Request(base + path, headers={"Cookie": f"sessionid={cookies[who]}"})
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200, (label, response.status)
                assert response.geturl() == base + path, (label, response.geturl())
            for _ in range(3):
                urllib.request.urlopen(request, timeout=30).read()
        print(
            f"gunicorn {args.workers} sync workers, wrk {connections} connections, {args.rounds} rounds x "
            f"{len(targets)} URLs x {args.seconds:g}s, CONN_MAX_AGE={env.get('CONN_MAX_AGE', 'settings default')}",
            flush=True,
        )
        for r in range(args.rounds):
            order = targets[r % len(targets) :] + targets[: r % len(targets)]
            round_rps: dict[str, float] = {}
            for label, path, who in order:
                rps, bad = _wrk(base + path, cookies[who], args.seconds, connections)
                if bad:
                    raise RuntimeError(f"{label}: {bad} responses were not 2xx/3xx")
                round_rps[label] = rps
            for label, rps in round_rps.items():
                results[label].append(rps)
                if round_rps["shell floor"]:
                    ratios[label].append(rps / round_rps["shell floor"])
            loads.append([round(x, 2) for x in os.getloadavg()])
            print(f"  round {r + 1}/{args.rounds} done, load average {loads[-1]}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    rows: list[dict[str, Any]] = []
    print(f"\n{'URL':<28}{'req/s':>9}{'÷ shell':>9}{'÷ bare':>8}   (medians over rounds)")
    for label, _path, _who in targets:
        rps = statistics.median(results[label])
        ratio = statistics.median(ratios[label] or [0.0])
        bare = statistics.median(
            [a / b for a, b in zip(results[label], results["bare floor"], strict=True) if b] or [0.0]
        )
        rows.append({"url": label, "rps_median": round(rps, 1), "ratio_to_shell": round(ratio, 3),
                     "ratio_to_bare": round(bare, 3), "rps": results[label]})  # fmt: skip
        print(f"{label:<28}{rps:>9.1f}{ratio:>9.2f}{bare:>8.2f}")
    pages = [r for r in rows if "floor" not in r["url"]]
    ok = all(r["ratio_to_shell"] >= 0.5 for r in pages)
    print(f"every page >= 0.5 x the shell floor: {'yes' if ok else 'NO'}; load averages {loads}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(
        json.dumps(
            {
                "workers": args.workers,
                "connections": connections,
                "rounds": args.rounds,
                "seconds": args.seconds,
                "conn_max_age": env.get("CONN_MAX_AGE", "settings default"),
                "cpus": os.cpu_count(),
                "load_averages": loads,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {out / 'load.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
