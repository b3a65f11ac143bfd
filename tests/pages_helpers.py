"""Shared set-up for the page tests (shell, Your products, Bills & payments, notifications)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import cast
from unittest import mock

from django.core.management import call_command
from django.utils import timezone

from accounts.models import BillingAccount, Membership, Role, User
from payments.models import PaymentMethod
from subscriptions.models import Subscription
from tests.factories import (
    BillingAccountFactory,
    InvoiceFactory,
    MembershipFactory,
    PaymentMethodFactory,
    ProductFactory,
    SubscriptionFactory,
    UserFactory,
)

_tokens = itertools.count(1)


def seed_demo() -> None:
    """`manage.py seed_demo`; registers the demo cards at the simulated bank when that exists, else fakes tokens."""
    try:
        import gateway_sim.services  # noqa: F401
    except ImportError:
        with mock.patch(
            "demo.management.commands.seed_demo.register_demo_card",
            side_effect=lambda **kw: f"sim_tok_test_{next(_tokens)}",
        ):
            call_command("seed_demo", verbosity=0)
    else:
        call_command("seed_demo", verbosity=0)


def demo_account(name: str) -> BillingAccount:
    return BillingAccount.objects.get(name=name)


def account_with_subscriptions(n: int, *, past_due: int = 0) -> tuple[BillingAccount, dict[str, User]]:
    """An account with an owner, admin and reader, a declined Visa and a good default Mastercard, n subscriptions.

    The first `past_due` subscriptions are on the Visa with a past-due invoice; the rest on the Mastercard,
    each with a paid-up open invoice, so a page sees every kind of row however large n is.
    """
    account = cast(BillingAccount, BillingAccountFactory())
    users: dict[str, User] = {}
    for role in (Role.OWNER, Role.ADMIN, Role.READER):
        users[role.value] = cast(Membership, MembershipFactory(account=account, role=role)).user
    visa = PaymentMethodFactory(
        account=account,
        last4="0341",
        owner=users["owner"],
        status=PaymentMethod.Status.DECLINED,
        last_decline_code="card_declined",
        last_declined_at=timezone.now(),
    )
    master = PaymentMethodFactory(
        account=account,
        brand=PaymentMethod.Brand.MASTERCARD,
        last4="4444",
        owner=users["admin"],
        is_default=True,
    )
    product = ProductFactory()
    now = timezone.now()
    for i in range(n):
        unpaid = i < past_due
        sub = SubscriptionFactory(
            account=account,
            product=product if i % 2 else ProductFactory(),
            payment_method=visa if unpaid else master,
            status=Subscription.Status.PAST_DUE if unpaid else Subscription.Status.ACTIVE,
            past_due_since=now - dt.timedelta(days=5) if unpaid else None,
        )
        InvoiceFactory(subscription=sub, status="past_due" if unpaid else "open")
    return account, users


def outsider() -> User:
    return cast(Membership, MembershipFactory(role=Role.OWNER)).user


__all__ = ["Membership", "UserFactory", "account_with_subscriptions", "demo_account", "outsider", "seed_demo"]
