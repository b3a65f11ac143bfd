"""manage.py run_dunning [--dry-run] — what the beat sweep does, from the command line.

--dry-run lists every action the next sweep would take and changes nothing; without it the due
accounts are worked through in this process (no worker needed), or handed to workers with --enqueue.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from dunning.selectors import dunning_plan
from dunning.services import account_dunning_run, due_account_ids, dunning_sweep


def progress_bar(done: int, total: int, *, width: int = 40, stream=sys.stderr) -> None:
    """A plain text progress bar on stderr, so stdout stays a clean list of actions."""
    total = max(total, 1)
    filled = int(width * done / total)
    stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} accounts")
    if done >= total:
        stream.write("\n")
    stream.flush()


class Command(BaseCommand):
    help = (
        "Run the dunning sweep now (renewals, retries, reconciliation, lifecycle), or show it with --dry-run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="show what the next sweep would do")
        parser.add_argument("--enqueue", action="store_true", help="hand due accounts to workers instead")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options) -> None:
        now = timezone.now()
        show = (
            (lambda d, t: progress_bar(d, t, stream=self.stderr._out)) if not options["no_progress"] else None
        )
        if options["dry_run"]:
            actions, counts = dunning_plan(now=now, progress=show)
            for a in actions:
                self.stdout.write(f"account {a.account_id:>8}  {a.kind:<14} {a.target:<24} {a.detail}")
            summary = ", ".join(f"{k}: {v}" for k, v in counts.items())
            self.stdout.write(f"dry run at {now:%Y-%m-%d %H:%M:%S %Z}; nothing changed. {summary}")
            return
        if options["enqueue"]:
            result = dunning_sweep(now=now)
            self.stdout.write(
                f"{result.enqueued} account(s) handed to workers in {result.batches} batch(es); "
                f"{result.leased} still with a worker"
            )
            return
        ids = due_account_ids(now=now)
        charged = 0
        for n, account_id in enumerate(ids, 1):
            report = account_dunning_run(account_id=account_id, now=now)
            charged += sum(1 for r in report.charged.values() if r == "succeeded")
            if show:
                show(n, len(ids))
        self.stdout.write(f"{len(ids)} account(s) processed; {charged} invoice(s) paid")
