# mypy: disable-error-code="return-value,arg-type"
"""Accounts with one renewing subscription on a simulated-bank card, for dunning tests and the benchmark."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from accounts.models import BillingAccount, Role
from gateway_sim.models import SimCharge
from payments.models import PaymentMethod
from subscriptions.models import Invoice, Product, Subscription
from tests.factories import (
    BillingAccountFactory,
    MembershipFactory,
    ProductFactory,
    SubscriptionFactory,
    UserFactory,
)
from tests.payments.scenario import card

SUCCEEDS = "4242424242424242"
INSUFFICIENT_FUNDS = "4000000000009995"  # soft
STOLEN = "4000000000009979"  # hard
THREE_D_SECURE = "4000002500003155"  # authentication_required off-session


@dataclass
class Renewing:
    account: BillingAccount
    method: PaymentMethod
    sub: Subscription


def renewing_subscription(
    *,
    number: str,
    language: str = "en",
    period: str = Product.Period.ANNUAL,
    ended_days_ago: int = 1,
    unit_price_minor: int = 1250,
    quantity: int = 2,
) -> Renewing:
    """A subscription whose period ended `ended_days_ago` days ago, so the sweep renews and charges it."""
    account = BillingAccountFactory(language=language)
    owner = UserFactory()
    MembershipFactory(account=account, user=owner, role=Role.OWNER)
    method = card(account=account, number=number, owner=owner)
    today = timezone.localdate()
    end = today - dt.timedelta(days=ended_days_ago)
    sub = SubscriptionFactory(
        account=account,
        product=ProductFactory(billing_period=period),
        quantity=quantity,
        unit_price_minor=unit_price_minor,
        payment_method=method,
        current_period_start=end - dt.timedelta(days=364 if period == Product.Period.ANNUAL else 29),
        current_period_end=end,
    )
    return Renewing(account=account, method=method, sub=sub)


def bank_charges(method: PaymentMethod) -> list[SimCharge]:
    return list(SimCharge.objects.filter(card__token=method.gateway_token).order_by("pk"))


def renewal_invoice(sub: Subscription) -> Invoice:
    return Invoice.objects.get(subscription=sub, transaction_type=Invoice.TransactionType.RENEW)


def seed_past_due(
    *,
    accounts: int,
    invoices_per_account: int,
    number: str = SUCCEEDS,
    prefix: str = "bulk",
    batch: int = 2000,
) -> list[int]:
    """Many accounts, each with one past-due subscription on its own simulated-bank card and
    `invoices_per_account` past-due invoices due for a retry now. Bulk inserts, for big numbers.
    Returns the invoice ids."""
    import secrets

    from gateway_sim.models import SimCard
    from subscriptions.models import InvoiceLine

    now = timezone.now()
    today = timezone.localdate()
    product, _ = Product.objects.get_or_create(
        code=f"{prefix}-m365", defaults={"name": "Microsoft 365 Business Basic"}
    )
    tag = secrets.token_hex(3)
    invoice_ids: list[int] = []
    for start in range(0, accounts, batch):
        n = min(batch, accounts - start)
        accs = BillingAccount.objects.bulk_create(
            [
                BillingAccount(
                    name=f"{prefix} {tag} {start + i}",
                    domain=f"{prefix}-{tag}-{start + i}.example",
                    currency="EUR",
                    notification_email=f"billing@{prefix}-{tag}-{start + i}.example",
                )
                for i in range(n)
            ]
        )
        cards = SimCard.objects.bulk_create(
            [
                SimCard(token=f"sim_card_{tag}_{a.pk}", number=number, exp_month=12, exp_year=2030)
                for a in accs
            ]
        )
        methods = PaymentMethod.objects.bulk_create(
            [
                PaymentMethod(
                    account=a,
                    brand=PaymentMethod.Brand.VISA,
                    last4=number[-4:],
                    exp_month=12,
                    exp_year=2030,
                    gateway="simulated",
                    gateway_token=c.token,
                    is_default=True,
                )
                for a, c in zip(accs, cards, strict=True)
            ]
        )
        subs = Subscription.objects.bulk_create(
            [
                Subscription(
                    account=a,
                    product=product,
                    quantity=3,
                    unit_price_minor=600,
                    currency="EUR",
                    status=Subscription.Status.PAST_DUE,
                    payment_method=m,
                    current_period_start=today - dt.timedelta(days=10),
                    current_period_end=today + dt.timedelta(days=20),
                    past_due_since=now - dt.timedelta(days=1),
                    grace_ends_at=now + dt.timedelta(days=29),
                    next_lifecycle_at=now + dt.timedelta(days=26),
                )
                for a, m in zip(accs, methods, strict=True)
            ]
        )
        invoices = Invoice.objects.bulk_create(
            [
                Invoice(
                    account_id=s.account_id,
                    subscription=s,
                    number=f"B{tag}{s.pk:08d}{k:02d}",
                    status=Invoice.Status.PAST_DUE,
                    transaction_type=Invoice.TransactionType.MONTHLY,
                    currency="EUR",
                    total_minor=1800,
                    amount_due_minor=1800,
                    issued_on=today - dt.timedelta(days=1),
                    due_on=today - dt.timedelta(days=1),
                    first_failed_at=now - dt.timedelta(days=1),
                    attempt_count=1,
                    next_attempt_at=now,
                )
                for s in subs
                for k in range(invoices_per_account)
            ]
        )
        InvoiceLine.objects.bulk_create(
            [
                InvoiceLine(
                    invoice=i, description=product.name, quantity=3, unit_price_minor=600, amount_minor=1800
                )
                for i in invoices
            ]
        )
        invoice_ids += [i.pk for i in invoices]
    return invoice_ids
