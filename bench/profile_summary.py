"""Where a profiled dunning sweep's wall time went (bench/dunning_sweep.py --profile).

Reads py-spy's raw output (one line per distinct stack: "frame;frame;…;frame count", idle samples
included) of the worker's processes and gives, for the pool processes that ran tasks, the share of
samples whose stack passes through each part below (inclusive: a part called inside another counts in
both), plus the functions most often at the top of the stack.

    .venv/bin/python bench/profile_summary.py bench/results/dunning_sweep_profile.txt
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

# Part → a pattern one of the stack's frames must match ("function (file)" as py-spy writes them).
PARTS: dict[str, str] = {
    "task (account run, whole)": r"(?:^|[.>]|;)account_dunning_run \(dunning/services\.py",
    "charge, one invoice (invoice_charge_due)": r"(?:^|[.>]|;)invoice_charge_due \(dunning/services\.py",
    "payments engine (invoices_charge)": r"(?:^|[.>]|;)invoices_charge \(payments/services\.py",
    "gateway call (simulated bank)": r"(?:^|[.>]|;)(charge|sim_charge_create) \((payments/gateways/simulated|gateway_sim/services)\.py",
    "ledger (payments/ledger.py)": r"\(payments/ledger\.py",
    "notice_send (receipt row + subject)": r"(?:^|[.>]|;)notice_send \(notifications/services\.py",
    "receipt delivery (deliver_notices)": r"(?:^|[.>]|;)deliver_notices? \(notifications/tasks\.py",
    "audit_record": r"(?:^|[.>]|;)audit_record \(audit/services\.py",
    "card history + budget": r"(?:^|[.>]|;)(card_history_load|retry_budget_check|decide) \(dunning/services\.py",
    "template rendering": r"(?:^|[.>]|;)render_to_string \(django/template/loader\.py",
    "logging": r"\(logging/__init__\.py",
    "waiting on PostgreSQL (psycopg)": r"\((psycopg|psycopg_pool)/",
    "Django ORM compile (SQLCompiler)": r"(?:^|[.>]|;)(as_sql|compile|pre_sql_setup|get_select) \(django/db/models/sql/compiler\.py",
    "model instance creation (Model.__init__/from_db)": r"(?:^|[.>]|;)(__init__|from_db) \(django/db/models/base\.py",
    "connection handling (close_old_connections/ensure_connection)": (
        r"(?:^|[.>]|;)(close_old_connections|ensure_connection|connect|close_if_unusable_or_obsolete|is_usable) "
        r"\(django/db/"
    ),
    "Celery signals (prerun/postrun)": r"(?:^|[.>]|;)send \(celery/utils/dispatch/signal\.py",
    "broker I/O (kombu/redis)": r"\((kombu|redis)/",
}


def _stacks(text: str) -> list[tuple[list[str], int]]:
    out = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out.append((stack.split(";"), int(count)))
    return out


def _frame_name(frame: str) -> str:
    # "Class.method (pkg/mod.py:123)" → "Class.method (pkg/mod.py"
    return re.sub(r":\d+\)$", "", frame)


def summary(text: str) -> dict[str, object]:
    stacks = [([_frame_name(f) for f in s], c) for s, c in _stacks(text)]
    # Pool processes: the ones whose stacks run tasks (trace_task); the parent only talks to Redis.
    tasks = [(s, c) for s, c in stacks if any("trace_task (" in f for f in s)]
    pool = [(s, c) for s, c in stacks if any(("trace_task (" in f or "workloop (" in f) for f in s)]
    total = sum(c for _, c in pool) or 1
    in_task = sum(c for _, c in tasks)
    parts = {}
    for name, pattern in PARTS.items():
        rx = re.compile(pattern)
        parts[name] = round(100 * sum(c for s, c in pool if any(rx.search(f) for f in s)) / total, 1)
    top: Counter[str] = Counter()
    for s, c in tasks:
        top[s[-1]] += c
    return {
        "pool_samples": total,
        "in_a_task_percent": round(100 * in_task / total, 1),
        "percent_of_pool_wall_time": parts,
        "top_of_stack_in_tasks_percent": {
            k: round(100 * v / (in_task or 1), 1) for k, v in top.most_common(15)
        },
    }


if __name__ == "__main__":
    print(json.dumps(summary(Path(sys.argv[1]).read_text()), indent=2))
