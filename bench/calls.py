"""Python function calls and SQL queries per request of the pages bench/load.py times.

Wall-clock throughput on this shared 2-core machine swings with the load average; the number of Python
function calls a request makes (cProfile) and its query count do not. Same URLs, same sessions, same
database as bench/load.py (run that once first: it seeds), in-process through Django's test client.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/billing_perf_pages .venv/bin/python bench/calls.py
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("SECRET_KEY", "bench-calls-" + "x" * 40)
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,testserver")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
    os.environ.setdefault("AXES_ENABLED", "0")
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.load import _targets

    targets, cookies = _targets()
    print(f"{'URL':<28}{'calls':>9}{'queries':>9}")
    for label, path, who in targets:
        client = Client()
        client.cookies["sessionid"] = cookies[who]
        for _ in range(3):  # warm templates, translations, caches
            assert client.get(path).status_code == 200, label
        profile = cProfile.Profile()
        with CaptureQueriesContext(connection) as queries:
            profile.enable()
            response = client.get(path)
            profile.disable()
        assert response.status_code == 200, label
        calls = pstats.Stats(profile).total_calls
        print(f"{label:<28}{calls:>9}{len(queries):>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
