"""manage.py simulate_recovery: replay the retry policies over a simulated population of failed
renewals and compare what each recovers (docs/RECOVERY.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dunning.models import RetryPolicy
from dunning.policy import decline_entry, timing_from_settings
from dunning.simulation import (
    POLICY_ORDER,
    format_table,
    load_overrides,
    parameters,
    simulate,
    svg_chart,
)

LABELS = {
    "kill_bill": "Fixed 8/8/8 (Kill Bill)",
    "stripe_8_in_14": "8 tries in 14 days (Stripe)",
    "per_code": "Per decline code",
    "smart": "Per code + timing",
}


class Command(BaseCommand):
    help = "Replay each retry policy against one simulated population of failed renewals and compare them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, action="append", help="random seed (repeat for several)")
        parser.add_argument("--size", type=int, help="failed renewals to draw (default 5000)")
        parser.add_argument("--params", type=Path, help="JSON or TOML file overriding any parameter")
        parser.add_argument(
            "--svg", type=Path, default=Path("var/recovery-simulation.svg"), help="chart file"
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        overrides: dict[str, Any] = {}
        if options["params"]:
            try:
                overrides = load_overrides(options["params"])
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read {options['params']}: {exc}") from exc
        if options["size"]:
            overrides["size"] = options["size"]
        params = parameters(overrides)
        policies = {p.category: p for p in RetryPolicy.objects.all()}
        timing = timing_from_settings()
        seeds = options["seed"] or [1]
        svg_path: Path = options["svg"]
        for n, seed in enumerate(seeds):
            self.stdout.write(f"Seed {seed}: {params['size']} failed renewals, {len(POLICY_ORDER)} policies")
            reports = simulate(
                params=params,
                seed=seed,
                entry_of=lambda code: decline_entry(code, policies=policies),
                timing=timing,
                progress=None if options["no_progress"] else self._progress,
            )
            if not options["no_progress"]:
                sys.stderr.write("\n")
            self.stdout.write(format_table(reports))
            self.stdout.write("")
            path = (
                svg_path
                if len(seeds) == 1
                else svg_path.with_name(f"{svg_path.stem}-seed{seed}{svg_path.suffix}")
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                svg_chart(
                    reports,
                    title=f"Cumulative euros recovered per day, seed {seed}, {params['size']} failed renewals",
                    labels=LABELS,
                ),
                encoding="utf-8",
            )
            self.stdout.write(f"Chart: {path}")
            if n < len(seeds) - 1:
                self.stdout.write("")

    def _progress(self, done: int, total: int) -> None:
        width = 40
        filled = round(width * done / total) if total else width
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,}")
        sys.stderr.flush()
