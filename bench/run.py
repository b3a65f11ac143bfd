"""`make bench`: every benchmark in one run, each writing JSON to bench/results/.

  pages   query count and median server time of each customer page, small vs large account
  sweep   the dunning sweep against the simulated gateway with real workers (bench/dunning_sweep.py)
  search  support search over a million accounts on PostgreSQL (bench/support_search.py)
  documents  invoice PDF render time (500 lines vs a 1-line floor) and CSV export memory (bench/invoice_documents.py)
  load    requests/s of pages under gunicorn against bare and shell floors, with wrk (bench/load.py)

Usage: bench/run.py [pages|sweep|search|documents|load ...] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", nargs="*", default=["pages", "sweep", "search", "documents", "load"])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    python = sys.executable
    failures = 0
    for name in args.which:
        script = {
            "pages": "pages.py",
            "sweep": "dunning_sweep.py",
            "search": "support_search.py",
            "documents": "invoice_documents.py",
            "load": "load.py",
        }[name]
        path = ROOT / "bench" / script
        if not path.exists():
            print(f"-- {name}: {path.name} is not there yet, skipped")
            continue
        command = [python, str(path)]
        if args.quick:
            command.append("--quick")
        print(f"\n== {name}: {' '.join(command[1:])}", flush=True)
        failures += subprocess.run(command, cwd=ROOT, env=os.environ.copy(), check=False).returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
