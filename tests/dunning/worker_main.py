"""Start a real Celery worker for the real-worker tests.

The only test-specific change: a `pending` attempt is considered abandoned (and looked up at the bank)
after TEST_PENDING_STALE_SECONDS instead of 5 minutes, so a worker killed mid-charge is recovered
within the test's time budget. Everything else is the production code path.
"""

from __future__ import annotations

import datetime as dt
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")
django.setup()

import dunning.services  # noqa: E402
import payments.services  # noqa: E402
from billing_portal.celery import app  # noqa: E402

stale = os.environ.get("TEST_PENDING_STALE_SECONDS")
if stale:
    payments.services.PENDING_STALE_AFTER = dt.timedelta(seconds=float(stale))
    dunning.services.PENDING_STALE_AFTER = dt.timedelta(seconds=float(stale))

if __name__ == "__main__":
    app.worker_main(["worker", *sys.argv[1:]])
