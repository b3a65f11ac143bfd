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
