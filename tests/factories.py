"""Factories for tests and benchmarks. Amounts are integer minor units."""

from __future__ import annotations

import datetime as dt
from typing import Any

import factory
from django.utils import timezone

from accounts.models import BillingAccount, Membership, Role, User
from payments.models import PaymentMethod
from subscriptions.models import Invoice, InvoiceLine, Product, Subscription

PASSWORD = "demo-pass-2026"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj: Any, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            obj.save()


class BillingAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BillingAccount

    name = factory.Sequence(lambda n: f"Account {n} Ltd")
    domain = factory.Sequence(lambda n: f"account{n}.example")
    currency = "EUR"
    language = "en"
    notification_email = factory.LazyAttribute(lambda a: f"billing@{a.domain}")
    address_line1 = "1 Main Street"
    postal_code = "1000 AA"
    city = "Amsterdam"
    country = "NL"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    account = factory.SubFactory(BillingAccountFactory)
    role = Role.ADMIN


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"product-{n}")
    name = factory.Sequence(lambda n: f"Product {n}")


class PaymentMethodFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PaymentMethod

    account = factory.SubFactory(BillingAccountFactory)
    brand = PaymentMethod.Brand.VISA
    last4 = "4242"
    exp_month = 12
    exp_year = 2030
    gateway = "simulated"
    gateway_token = factory.Sequence(lambda n: f"sim_tok_factory_{n}")


def _today() -> dt.date:
    return timezone.localdate()


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    account = factory.SubFactory(BillingAccountFactory)
    product = factory.SubFactory(ProductFactory)
    quantity = 1
    unit_price_minor = 1000
    currency = factory.SelfAttribute("account.currency")
    current_period_start = factory.LazyFunction(lambda: _today().replace(day=1))
    current_period_end = factory.LazyAttribute(lambda s: s.current_period_start + dt.timedelta(days=29))


class InvoiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Invoice
        skip_postgeneration_save = True

    account = factory.SelfAttribute("subscription.account")
    subscription = factory.SubFactory(SubscriptionFactory)
    number = factory.Sequence(lambda n: f"T{n:09d}")
    currency = factory.SelfAttribute("account.currency")
    total_minor = factory.LazyAttribute(lambda i: i.subscription.period_price.amount_minor)
    amount_due_minor = factory.SelfAttribute("total_minor")
    issued_on = factory.LazyFunction(_today)
    due_on = factory.LazyAttribute(lambda i: i.issued_on + dt.timedelta(days=30))

    @factory.post_generation
    def lines(obj: Any, create: bool, extracted: Any, **kwargs: Any) -> None:
        if not create or extracted is False:
            return
        sub = obj.subscription
        InvoiceLine.objects.create(
            invoice=obj,
            description=sub.product.name if sub else "Charge",
            quantity=sub.quantity if sub else 1,
            unit_price_minor=sub.unit_price_minor if sub else obj.total_minor,
            amount_minor=(sub.quantity * sub.unit_price_minor) if sub else obj.total_minor,
        )
