"""Seeding for the dunning benchmark (bench/dunning_sweep.py): many past-due invoices, fast, in the
shape real accounts have.

Rows are built as unsaved model instances (so every Django default and auto_now_add applies, and a new
model field needs no change here), given ids reserved from their table's sequence in one query, and
written with PostgreSQL's COPY: 100,000 invoices with their lines, subscriptions, cards and accounts in
seconds instead of minutes of INSERTs.

The shape: each account has ONE card (the default payment method, a simulated-bank card that succeeds)
carrying one to three past-due subscriptions, and its invoices (at least one, on average
invoices ÷ accounts, a random spread) are spread over those subscriptions. So a charge that takes all
past-due invoices of an account on one card in one attempt (PRODUCT.md flow 3, issue 12) shows up as
fewer charges/s than invoices paid/s. Each account also has the declined attempt that made those
invoices past due a day ago, so the retry budget reads a real card history.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.utils import timezone

# Simulated-bank card that succeeds (Stripe's 4242 test card, gateway_sim/services.py).
SUCCEEDS = "4242424242424242"
PRODUCTS = (
    ("bench-m365-basic", "Microsoft 365 Business Basic", 600),
    ("bench-m365-standard", "Microsoft 365 Business Standard", 1250),
    ("bench-m365-premium", "Microsoft 365 Business Premium", 2200),
    ("bench-teams-ess", "Microsoft Teams Essentials", 400),
)


@dataclass
class Seeded:
    invoices: int
    accounts: int
    subscriptions: int
    max_invoices_per_account: int


def invoice_counts(*, invoices: int, accounts: int, rng: random.Random) -> list[int]:
    """How many past-due invoices each account has: at least one, `invoices` in all, spread at random
    (so some accounts have one, some many, around the average)."""
    if accounts <= 0 or invoices < accounts:
        raise ValueError("need at least one invoice per account")
    counts = [1] * accounts
    for i in rng.choices(range(accounts), k=invoices - accounts):
        counts[i] += 1
    return counts


def copy_rows(model: type[models.Model], objs: Sequence[models.Model]) -> None:
    """INSERT `objs` with COPY. Ids come from the table's own sequence, reserved in one query, and are
    set on the objects (so later rows can point at them)."""
    if not objs:
        return
    meta = model._meta
    table = meta.db_table
    pk = meta.pk
    assert pk is not None
    fields = list(meta.concrete_fields)
    db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: the proxy's look-up per value adds up
    # Only auto_now(_add) fields compute their value on save; the others are read as they are.
    stamped = {
        f.attname for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    }
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [table, pk.column, len(objs)],
        )
        for obj, (new_id,) in zip(objs, cursor.fetchall(), strict=True):
            obj.pk = new_id
        columns = ", ".join(db.ops.quote_name(f.column) for f in fields)
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw.copy(f"COPY {db.ops.quote_name(table)} ({columns}) FROM STDIN") as copy:
            for obj in objs:
                copy.write_row(
                    [
                        f.get_db_prep_save(
                            f.pre_save(obj, add=True) if f.attname in stamped else getattr(obj, f.attname),
                            connection=db,
                        )
                        for f in fields
                    ]
                )


def seed_sweep(
    *, invoices: int, accounts: int, seed: int = 12, batch: int = 5000, even: bool = False
) -> Seeded:
    """`invoices` past-due invoices due for a retry now, over `accounts` accounts (see the module).
    `even`: every account gets the same number (invoices ÷ accounts), for per-account measurements."""
    from accounts.models import BillingAccount
    from gateway_sim.models import SimCard
    from payments.models import PaymentAllocation, PaymentAttempt, PaymentMethod
    from subscriptions.models import Invoice, InvoiceLine, Product, Subscription

    rng = random.Random(seed)
    now = timezone.now()
    today = timezone.localdate()
    failed_at = now - dt.timedelta(days=1)
    products = [
        Product.objects.get_or_create(code=code, defaults={"name": name})[0] for code, name, _ in PRODUCTS
    ]
    prices = {p.pk: price for p, (_, _, price) in zip(products, PRODUCTS, strict=True)}
    counts = (
        [invoices // accounts] * accounts
        if even
        else invoice_counts(invoices=invoices, accounts=accounts, rng=rng)
    )
    subscriptions = 0
    for start in range(0, accounts, batch):
        chunk = counts[start : start + batch]
        accs = [
            BillingAccount(
                name=f"Sweep bench {start + i}",
                domain=f"sweep-bench-{start + i}.example",
                currency="EUR",
                language="nl" if (start + i) % 4 == 0 else "en",
                notification_email=f"billing@sweep-bench-{start + i}.example",
            )
            for i in range(len(chunk))
        ]
        copy_rows(BillingAccount, accs)
        cards = [
            SimCard(token=f"sim_card_bench_{a.pk}", number=SUCCEEDS, exp_month=12, exp_year=today.year + 3)
            for a in accs
        ]
        copy_rows(SimCard, cards)
        methods = [
            PaymentMethod(
                account=a,
                brand=PaymentMethod.Brand.VISA,
                last4=SUCCEEDS[-4:],
                exp_month=12,
                exp_year=today.year + 3,
                gateway="simulated",
                gateway_token=c.token,
                is_default=True,
            )
            for a, c in zip(accs, cards, strict=True)
        ]
        copy_rows(PaymentMethod, methods)
        subs: list[Subscription] = []
        per_account: list[list[Subscription]] = []
        for a, m, n in zip(accs, methods, chunk, strict=True):
            own = [
                Subscription(
                    account=a,
                    product=product,
                    quantity=rng.randint(1, 25),
                    unit_price_minor=prices[product.pk],
                    currency="EUR",
                    status=Subscription.Status.PAST_DUE,
                    payment_method=m,
                    current_period_start=today - dt.timedelta(days=10),
                    current_period_end=today + dt.timedelta(days=20),
                    past_due_since=failed_at,
                    grace_ends_at=now + dt.timedelta(days=29),
                    next_lifecycle_at=now + dt.timedelta(days=26),
                )
                for product in rng.sample(products, k=min(n, rng.randint(1, 3)))
            ]
            per_account.append(own)
            subs += own
        copy_rows(Subscription, subs)
        subscriptions += len(subs)
        invs: list[Invoice] = []
        for own, n in zip(per_account, chunk, strict=True):
            for k in range(n):
                sub = own[k % len(own)]  # every subscription has at least one
                amount = sub.unit_price_minor * sub.quantity
                invs.append(
                    Invoice(
                        account_id=sub.account_id,
                        subscription=sub,
                        number=f"SB{sub.pk:08d}-{k:03d}",
                        status=Invoice.Status.PAST_DUE,
                        transaction_type=Invoice.TransactionType.MONTHLY,
                        currency="EUR",
                        total_minor=amount,
                        amount_due_minor=amount,
                        issued_on=today - dt.timedelta(days=1 + k // len(own) * 30),
                        due_on=today - dt.timedelta(days=1 + k // len(own) * 30),
                        first_failed_at=failed_at,
                        attempt_count=1,
                        next_attempt_at=now,
                    )
                )
        copy_rows(Invoice, invs)
        copy_rows(
            InvoiceLine,
            [
                InvoiceLine(
                    invoice=i,
                    description=i.subscription.product.name if i.subscription else "",
                    quantity=i.subscription.quantity if i.subscription else 1,
                    unit_price_minor=i.subscription.unit_price_minor if i.subscription else i.total_minor,
                    amount_minor=i.total_minor,
                )
                for i in invs
            ],
        )
        # The decline a day ago that made these invoices past due: one attempt per account for its
        # invoices (as Settle balance and a grouped charge make), a soft decline.
        by_account: dict[int, list[Invoice]] = {}
        for i in invs:
            by_account.setdefault(i.account_id, []).append(i)
        attempts = [
            PaymentAttempt(
                account=a,
                payment_method=m,
                amount_minor=sum(i.total_minor for i in by_account[a.pk]),
                currency="EUR",
                status=PaymentAttempt.Status.FAILED,
                source=PaymentAttempt.Source.RENEWAL,
                decline_code="insufficient_funds",
                idempotency_key=f"seed:{a.pk}",
                gateway="simulated",
                gateway_reference=f"sim_ch_seed_{a.pk}",
                off_session=True,
                initiated_by_label="job: dunning",
                completed_at=failed_at,
            )
            for a, m in zip(accs, methods, strict=True)
        ]
        copy_rows(PaymentAttempt, attempts)
        PaymentAttempt.objects.filter(pk__in=[a.pk for a in attempts]).update(created_at=failed_at)
        copy_rows(
            PaymentAllocation,
            [
                PaymentAllocation(attempt=att, invoice=i, amount_minor=i.total_minor)
                for att in attempts
                for i in by_account[att.account_id]
            ],
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return Seeded(
        invoices=invoices,
        accounts=accounts,
        subscriptions=subscriptions,
        max_invoices_per_account=max(counts),
    )
