# mypy: disable-error-code="return-value,arg-type"
"""A Contoso-like account built from factories, with its cards registered at the simulated bank."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import cast

from django.utils import timezone

from accounts.models import BillingAccount, Role, User
from gateway_sim.services import sim_card_register
from payments.gateways.simulated import simulated_fingerprint
from payments.models import PaymentMethod
from subscriptions.models import Invoice, Subscription
from tests.factories import (
    BillingAccountFactory,
    InvoiceFactory,
    MembershipFactory,
    PaymentMethodFactory,
    ProductFactory,
    SubscriptionFactory,
    UserFactory,
)

BRANDS = {"4": PaymentMethod.Brand.VISA, "5": PaymentMethod.Brand.MASTERCARD}


def card(
    *,
    account: BillingAccount,
    number: str,
    owner: User | None,
    exp_month: int = 12,
    exp_year: int = 2030,
    status: str = PaymentMethod.Status.VALID,
    decline_code: str = "",
) -> PaymentMethod:
    token = sim_card_register(number=number, exp_month=exp_month, exp_year=exp_year)
    brand = BRANDS.get(number[0], PaymentMethod.Brand.OTHER)
    return PaymentMethodFactory(
        account=account,
        brand=brand,
        fingerprint=simulated_fingerprint(
            brand=brand, last4=number[-4:], exp_month=exp_month, exp_year=exp_year
        ),
        last4=number[-4:],
        exp_month=exp_month,
        exp_year=exp_year,
        owner=owner,
        status=status,
        last_decline_code=decline_code,
        gateway="simulated",
        gateway_token=token,
    )


def subscription(
    *,
    account: BillingAccount,
    name: str,
    quantity: int,
    unit_price_minor: int,
    method: PaymentMethod | None,
    past_due: bool,
    due_in_days: int = 10,
) -> tuple[Subscription, Invoice]:
    now = timezone.now()
    today = timezone.localdate()
    product = ProductFactory(code=name.lower().replace(" ", "-").replace("(", "").replace(")", ""), name=name)
    sub = SubscriptionFactory(
        account=account,
        product=product,
        quantity=quantity,
        unit_price_minor=unit_price_minor,
        payment_method=method,
        status=Subscription.Status.PAST_DUE if past_due else Subscription.Status.ACTIVE,
        past_due_since=now - dt.timedelta(days=5) if past_due else None,
        grace_ends_at=now + dt.timedelta(days=25) if past_due else None,
    )
    if past_due:
        invoice = InvoiceFactory(
            subscription=sub,
            status=Invoice.Status.PAST_DUE,
            issued_on=today - dt.timedelta(days=5),
            due_on=today - dt.timedelta(days=5),
            first_failed_at=now - dt.timedelta(days=5),
            attempt_count=1,
        )
    else:
        invoice = InvoiceFactory(
            subscription=sub,
            status=Invoice.Status.OPEN,
            issued_on=today,
            due_on=today + dt.timedelta(days=due_in_days),
        )
    return sub, invoice


@dataclass
class Contoso:
    account: BillingAccount
    admin: User
    finance: User
    reader: User
    visa: PaymentMethod
    mastercard: PaymentMethod
    subs: dict[str, Subscription]
    invoices: dict[str, Invoice]


def build_contoso(prefix: str = "") -> Contoso:
    account = BillingAccountFactory(
        name=f"{prefix}Contoso Ltd", domain=f"{prefix}contoso.example", currency="EUR"
    )
    admin = cast(User, UserFactory(email=f"admin@{prefix}contoso.example"))
    finance = cast(User, UserFactory(email=f"finance@{prefix}contoso.example"))
    reader = cast(User, UserFactory(email=f"reader@{prefix}contoso.example"))
    MembershipFactory(account=account, user=admin, role=Role.OWNER)
    MembershipFactory(account=account, user=finance, role=Role.ADMIN)
    MembershipFactory(account=account, user=reader, role=Role.READER)
    visa = card(
        account=account,
        number="4000000000000341",
        owner=admin,
        status=PaymentMethod.Status.DECLINED,
        decline_code="card_declined",
    )
    mastercard = card(account=account, number="5555555555554444", owner=finance)
    subs: dict[str, Subscription] = {}
    invoices: dict[str, Invoice] = {}
    for key, name, qty, unit, method, past_due in [
        ("m365", f"{prefix}Microsoft 365 Business Standard", 25, 1170, visa, True),
        ("exchange", f"{prefix}Exchange Online (Plan 1)", 10, 370, visa, True),
        ("powerbi", f"{prefix}Power BI Pro", 5, 940, visa, True),
        ("visio", f"{prefix}Visio Plan 2", 1, 1400, mastercard, True),
        ("teams", f"{prefix}Teams Essentials", 1, 3600, mastercard, False),
    ]:
        subs[key], invoices[key] = subscription(
            account=account, name=name, quantity=qty, unit_price_minor=unit, method=method, past_due=past_due
        )
    return Contoso(account, admin, finance, reader, visa, mastercard, subs, invoices)
