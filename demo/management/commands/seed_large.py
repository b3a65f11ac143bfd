"""Big data for benchmarks: one account with 1,000 subscriptions and 10,000 invoices, plus many small ones.

Every account is in arrears the way a real one is after a declined card: each subscription's newest
invoice is past due (1,000 past-due invoices on the big account), so the past-due paths (the Home
banner, Settle balance, Payment methods' warnings, the support view's balance) are measured at scale.
Each account has two cards: a declined Visa paying nine in ten subscriptions and a valid default
Mastercard paying the rest, whose invoices are past due too (a retry is due), so Settle balance with
the Mastercard chosen shows both lists.

Rows are written with bulk_create in batches; a progress bar goes to stderr. Cards are plain rows with
synthetic tokens (benchmarks of pages never charge them).
"""

from __future__ import annotations

import datetime as dt
import sys

from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import BillingAccount, Membership, Role, User
from payments.models import PaymentMethod
from subscriptions.models import Invoice, InvoiceLine, Product, Subscription

PASSWORD = "demo-pass-2026"
BATCH = 2000


class Progress:
    """A one-line text progress bar on stderr."""

    def __init__(self, label: str, total: int, stream=sys.stderr, width: int = 30) -> None:
        self.label, self.total, self.stream, self.width, self.done = label, max(total, 1), stream, width, 0

    def advance(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        filled = self.width * self.done // self.total
        self.stream.write(
            f"\r{self.label:<24} [{'#' * filled}{'.' * (self.width - filled)}] {self.done:>7}/{self.total}"
        )
        if self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


class Command(BaseCommand):
    help = "Create large benchmark data (prefix 'large-'): one big account and many small ones."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--subscriptions", type=int, default=1000)
        parser.add_argument("--invoices", type=int, default=10000)
        parser.add_argument("--small-accounts", type=int, default=500)

    def handle(self, *args, subscriptions: int, invoices: int, small_accounts: int, **options) -> None:
        if BillingAccount.objects.filter(domain="large-big.example").exists():
            self.stdout.write("Large data already present (large-big.example); nothing to do.")
            return
        products = [
            Product.objects.get_or_create(
                code=f"large-product-{i}", defaults={"name": f"Large product {i:02d}"}
            )[0]
            for i in range(20)
        ]
        user = User.objects.create_user(
            email="admin@large-big.example", password=PASSWORD, full_name="Big Admin"
        )
        with transaction.atomic():
            big = BillingAccount.objects.create(
                name="Large Big Corp",
                domain="large-big.example",
                currency="EUR",
                notification_email="billing@large-big.example",
            )
            Membership.objects.create(account=big, user=user, role=Role.OWNER)
            self._fill(big, user, products, subscriptions, invoices, label="big account")
        small_user = User.objects.create_user(
            email="admin@large-small.example", password=PASSWORD, full_name="Small Admin"
        )
        progress = Progress("small accounts", small_accounts, self.stderr)
        for i in range(small_accounts):
            with transaction.atomic():
                account = BillingAccount.objects.create(
                    name=f"Large Small {i:05d}",
                    domain=f"large-small-{i:05d}.example",
                    currency="EUR",
                    notification_email=f"billing@large-small-{i:05d}.example",
                )
                if i < 50:  # enough for the switcher to be long; the rest exist for the support search
                    Membership.objects.create(account=account, user=small_user, role=Role.OWNER)
                self._fill(account, small_user, products, 1, 10, label=None)
            progress.advance()
        # What autovacuum would do after a bulk load, done now (it lags behind one, and the benchmark machines
        # run without it). Without statistics PostgreSQL guesses one row per account and drives the past-due
        # and in-flight reads from the wrong table, 2-3x slower; without the visibility map the Invoices
        # count reads 10,000 rows from the heap instead of the index (1.1 ms instead of 0.6).
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
        self.stdout.write(self.style.SUCCESS(f"Created large data: admin@large-big.example / {PASSWORD}"))

    def _fill(self, account, user, products, n_subs: int, n_invoices: int, label: str | None) -> None:
        today = timezone.localdate()
        now = timezone.now()
        declined = PaymentMethod.objects.create(
            account=account,
            brand="visa",
            last4="4242",
            exp_month=12,
            exp_year=2030,
            owner=user,
            gateway="simulated",
            gateway_token=f"large_{account.pk}",
            status=PaymentMethod.Status.DECLINED,
            last_decline_code="insufficient_funds",
            last_declined_at=now - dt.timedelta(days=1),
        )
        valid = PaymentMethod.objects.create(
            account=account,
            brand="mastercard",
            last4="4444",
            exp_month=11,
            exp_year=2031,
            owner=user,
            gateway="simulated",
            gateway_token=f"large_{account.pk}_mc",
            is_default=True,
        )
        on_valid = n_subs // 10  # the last tenth; a one-subscription account has it on the Visa
        subs = Subscription.objects.bulk_create(
            [
                Subscription(
                    account=account,
                    product=products[i % len(products)],
                    quantity=1 + i % 50,
                    unit_price_minor=500 + (i % 7) * 100,
                    currency=account.currency,
                    payment_method=valid if i >= n_subs - on_valid else declined,
                    status=Subscription.Status.PAST_DUE,
                    past_due_since=now - dt.timedelta(days=1),
                    grace_ends_at=now + dt.timedelta(days=29),
                    next_lifecycle_at=now + dt.timedelta(days=26),
                    current_period_start=today.replace(day=1),
                    current_period_end=today.replace(day=1) + dt.timedelta(days=29),
                )
                for i in range(n_subs)
            ],
            batch_size=BATCH,
        )
        progress = Progress(label, n_invoices, self.stderr) if label else None
        prefix = f"L{account.pk:06d}-"
        for start in range(0, n_invoices, BATCH):
            chunk = range(start, min(n_invoices, start + BATCH))
            batch = []
            for i in chunk:
                sub = subs[i % len(subs)]
                issued = today - dt.timedelta(days=30 * (i // len(subs)) + 1)
                total = sub.unit_price_minor * sub.quantity
                # The newest invoice of each subscription (the first len(subs)) is past due.
                unpaid = i < len(subs)
                batch.append(
                    Invoice(
                        account=account,
                        subscription=sub,
                        number=f"{prefix}{i:06d}",
                        status=Invoice.Status.PAST_DUE if unpaid else Invoice.Status.PAID,
                        currency=account.currency,
                        total_minor=total,
                        amount_due_minor=total if unpaid else 0,
                        issued_on=issued,
                        due_on=issued,
                        period_start=issued,
                        period_end=issued + dt.timedelta(days=29),
                        paid_at=None if unpaid else now,
                        first_failed_at=now - dt.timedelta(days=1) if unpaid else None,
                        attempt_count=1 if unpaid else 0,
                    )
                )
            created = Invoice.objects.bulk_create(batch, batch_size=BATCH)
            InvoiceLine.objects.bulk_create(
                [
                    InvoiceLine(
                        invoice=inv,
                        description=sub.product.name,
                        quantity=sub.quantity,
                        unit_price_minor=sub.unit_price_minor,
                        amount_minor=inv.total_minor,
                    )
                    for i, inv in zip(chunk, created, strict=True)
                    for sub in [subs[i % len(subs)]]
                ],
                batch_size=BATCH,
            )
            if progress:
                progress.advance(len(batch))
