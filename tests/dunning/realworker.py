"""Helpers for tests and the benchmark that run real Celery workers against Redis and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url_for_current_db() -> str:
    """DATABASE_URL pointing at the database this process uses now (pytest's test database)."""
    base = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(base._replace(path="/" + connection.settings_dict["NAME"]))


def start_worker(
    *,
    concurrency: int = 2,
    pool: str = "prefork",
    extra_env: dict[str, str] | None = None,
    log: Path | None = None,
    extra_args: list[str] | None = None,
) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_current_db(),
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "DEBUG": "1",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        **(extra_env or {}),
    }
    env.pop("BILLING_TESTING", None)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "dunning" / "worker_main.py"),
            "--pool",
            pool,
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--prefetch-multiplier",
            "1",
            *(extra_args or []),
        ],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so SIGKILL reaches the pool children too
    )


def kill_worker(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def stop_worker(proc: subprocess.Popen) -> None:
    kill_worker(proc, signal.SIGTERM)


def wait_for(predicate, *, timeout: float, interval: float = 0.2, tick=None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def use_broker(app, url: str) -> None:
    """Point this process's Celery producer at another broker URL (drops pooled connections)."""
    app.conf.broker_url = url
    app.conf.broker_write_url = None
    # kombu keeps one pool per URL; closing it would break the next use of that URL, so just let go.
    app._pool = None
    app.amqp._producer_pool = None
