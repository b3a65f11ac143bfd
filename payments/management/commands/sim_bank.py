"""Raise a refund or a chargeback at the simulated bank, as a payment provider's dashboard or a
cardholder's bank would, and deliver its event: `sim_bank refund PAY-00000042 [--amount 14.00]`,
`sim_bank dispute PAY-00000042 [--reason fraudulent]`, `sim_bank decide DP-00000007 --lost|--won`."""

from __future__ import annotations

import re
from decimal import InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing_portal.money import Money
from payments.models import Dispute, PaymentAttempt
from payments.refunds import refundable_minor
from payments.simulator import SimulationError, sim_dispute_decide, sim_dispute_raise, sim_refund_raise

REFERENCE_RE = re.compile(r"^(?:PAY|DP)-?([0-9]{1,12})$", re.ASCII | re.IGNORECASE)


def _pk(reference: str) -> int:
    match = REFERENCE_RE.match(reference.strip())
    if not match:
        raise CommandError(f"not a reference: {reference!r} (e.g. PAY-00000042 or DP-00000007)")
    return int(match.group(1))


class Command(BaseCommand):
    help = "Raise a refund or a chargeback on a charge at the simulated bank and deliver its event."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="what", required=True)
        refund = sub.add_parser("refund", help="a refund made at the bank (like Stripe's dashboard)")
        refund.add_argument("payment", help="PAY-00000042")
        refund.add_argument("--amount", default="", help="e.g. 14.00; everything left when omitted")
        dispute = sub.add_parser("dispute", help="the cardholder's bank opens a chargeback")
        dispute.add_argument("payment", help="PAY-00000042")
        dispute.add_argument("--reason", default="fraudulent")
        decide = sub.add_parser("decide", help="the card network decides a chargeback")
        decide.add_argument("dispute", help="DP-00000007")
        outcome = decide.add_mutually_exclusive_group(required=True)
        outcome.add_argument("--won", action="store_true")
        outcome.add_argument("--lost", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["what"] == "decide":
                dispute = Dispute.objects.filter(pk=_pk(options["dispute"])).first()
                if dispute is None:
                    raise CommandError(f"no dispute {options['dispute']}")
                done = sim_dispute_decide(dispute_id=dispute.pk, won=options["won"])
            else:
                attempt = PaymentAttempt.objects.filter(pk=_pk(options["payment"])).first()
                if attempt is None:
                    raise CommandError(f"no payment {options['payment']}")
                if options["what"] == "refund":
                    amount = refundable_minor(attempt=attempt)
                    if options["amount"]:
                        try:
                            amount = Money.from_decimal(options["amount"], attempt.currency).amount_minor
                        except (InvalidOperation, ValueError):
                            raise CommandError(f"not an amount: {options['amount']!r}") from None
                    done = sim_refund_raise(attempt_id=attempt.pk, amount_minor=amount)
                else:
                    done = sim_dispute_raise(attempt_id=attempt.pk, reason=options["reason"])
        except SimulationError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{done.gateway_reference}: {done.note}")
