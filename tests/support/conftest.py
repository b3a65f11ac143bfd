from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from accounts.models import BillingAccount, Role
from subscriptions.models import Invoice, Subscription
from support.services import support_staff_group
from tests.factories import (
    BillingAccountFactory,
    InvoiceFactory,
    MembershipFactory,
    SubscriptionFactory,
    UserFactory,
)


@pytest.fixture
def support_user(db):
    user = UserFactory(email="agent@billing.example", is_staff=True)
    user.groups.add(support_staff_group())
    return user


@pytest.fixture
def support_client(client, support_user):
    client.force_login(support_user)
    return client


def staff_with(*codenames: str):
    """A staff user holding only the named support permissions."""
    user = UserFactory(is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="support", codename__in=codenames)
    )
    return user


def past_due_subscription(
    account: BillingAccount, *, amount_minor: int, days_ago: int, number: str, disabled=False
):
    """A subscription whose one invoice has been past due for days_ago days."""
    now = timezone.now()
    since = now - dt.timedelta(days=days_ago)
    sub = SubscriptionFactory(
        account=account,
        unit_price_minor=amount_minor,
        status=Subscription.Status.DISABLED if disabled else Subscription.Status.PAST_DUE,
        past_due_since=since,
        grace_ends_at=since + dt.timedelta(days=30),
        next_lifecycle_at=since + dt.timedelta(days=30),
        disabled_at=since + dt.timedelta(days=30) if disabled else None,
    )
    due = timezone.localdate() - dt.timedelta(days=days_ago)
    invoice = InvoiceFactory(
        subscription=sub,
        number=number,
        status=Invoice.Status.PAST_DUE,
        issued_on=due - dt.timedelta(days=30),
        due_on=due,
    )
    return sub, invoice


@pytest.fixture
def northwind(db):
    """Like the demo's Northwind: USD, pays by invoice, Azure disabled, $1,250.00 past due 45 days."""
    account = BillingAccountFactory(
        name="Northwind Traders",
        domain="northwind.example",
        currency="USD",
        payment_mode=BillingAccount.PaymentMode.BANK_TRANSFER,
        remittance_bank_name="Contoso Bank N.A.",
        remittance_iban="US64SVBKUS6S3300958879",
    )
    MembershipFactory(account=account, user=UserFactory(email="admin@northwind.example"), role=Role.OWNER)
    sub, invoice = past_due_subscription(
        account, amount_minor=125000, days_ago=45, number="INV-2026-300001", disabled=True
    )
    return account, sub, invoice
