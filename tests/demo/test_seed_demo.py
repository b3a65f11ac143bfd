import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.db.models import Sum
from django.utils import timezone

from accounts.models import BillingAccount, Membership, User
from gateway_sim.models import SimCard
from payments.models import PaymentAttempt, PaymentMethod
from subscriptions.models import Invoice, Subscription

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo():
    call_command("seed_demo", stdout=io.StringIO())


def _past_due_minor(account, method=None):
    qs = Invoice.objects.filter(account=account, status=Invoice.Status.PAST_DUE)
    if method is not None:
        qs = qs.filter(subscription__payment_method=method)
    return qs.aggregate(total=Sum("amount_due_minor"))["total"]


def test_contoso_owes_376_50_on_the_declined_visa(demo):
    contoso = BillingAccount.objects.get(name="Contoso Ltd")
    assert (contoso.currency, contoso.language) == ("EUR", "en")
    roles = dict(Membership.objects.filter(account=contoso).values_list("user__email", "role"))
    assert roles == {
        "admin@contoso.example": "owner",
        "finance@contoso.example": "admin",
        "reader@contoso.example": "reader",
    }
    visa = PaymentMethod.objects.get(account=contoso, last4="0341")
    assert (visa.brand, visa.status, visa.last_decline_code) == ("visa", "declined", "card_declined")
    assert visa.owner.email == "admin@contoso.example"
    subs = (
        Subscription.objects.filter(payment_method=visa).select_related("product").order_by("product__name")
    )
    assert [(s.product.name, s.quantity, s.period_price.amount_minor, s.status) for s in subs] == [
        ("Exchange Online (Plan 1)", 10, 3700, "past_due"),
        ("Microsoft 365 Business Standard", 25, 29250, "past_due"),
        ("Power BI Pro", 5, 4700, "past_due"),
    ]
    assert _past_due_minor(contoso, visa) == 37650
    assert Invoice.objects.filter(subscription__payment_method=visa).count() == 3
    declines = PaymentAttempt.objects.filter(payment_method=visa, status="failed")
    assert set(declines.values_list("decline_code", flat=True)) == {"card_declined"}
    # A state the real engine could have produced: the renewal charge, each retry its soft-decline policy
    # scheduled in the 5 days since, and the next retry still to come.
    for invoice in Invoice.objects.filter(subscription__payment_method=visa):
        assert invoice.attempt_count == invoice.allocations.count() > 1
        assert invoice.next_attempt_at is not None
        assert invoice.next_attempt_at > timezone.now()
        keys = sorted(invoice.allocations.values_list("attempt__idempotency_key", flat=True))
        assert keys == [f"dunning:{invoice.pk}:{n}" for n in range(1, invoice.attempt_count + 1)]


def test_the_demo_has_the_mails_its_history_would_have_sent(demo):
    from notifications.models import Notice

    contoso = BillingAccount.objects.get(name="Contoso Ltd")
    failed = Notice.objects.filter(account=contoso, kind="payment_failed")
    visa_runs = PaymentAttempt.objects.filter(account=contoso, payment_method__last4="0341")
    # One mail per card and run (the three Visa subscriptions together), not one per invoice.
    assert failed.filter(context__items__isnull=False).count() >= 1
    assert failed.count() < visa_runs.count()
    northwind = BillingAccount.objects.get(name="Northwind Traders")
    assert set(Notice.objects.filter(account=northwind).values_list("kind", flat=True)) == {
        "final_warning",
        "disabled",
    }


def test_contoso_mastercard_has_visio_past_due_and_teams_open(demo):
    contoso = BillingAccount.objects.get(name="Contoso Ltd")
    mastercard = PaymentMethod.objects.get(account=contoso, last4="4444")
    assert (mastercard.brand, mastercard.status, mastercard.owner.email) == (
        "mastercard",
        "valid",
        "finance@contoso.example",
    )
    visio = Invoice.objects.get(subscription__product__name="Visio Plan 2")
    assert (visio.status, visio.amount_due_minor) == ("past_due", 1400)
    assert {a.attempt.decline_code for a in visio.allocations.all()} == {"processing_error"}
    teams = Invoice.objects.get(subscription__product__name="Microsoft Teams Essentials")
    assert (teams.status, teams.amount_due_minor) == ("open", 3600)
    assert teams.due_on == timezone.localdate() + dt.timedelta(days=10)


def test_fabrikam_card_expired_and_renewal_is_20_days_past_due(demo):
    fabrikam = BillingAccount.objects.get(name="Fabrikam BV")
    assert (fabrikam.currency, fabrikam.language) == ("EUR", "nl")
    visa = PaymentMethod.objects.get(account=fabrikam, last4="1881")
    assert (visa.exp_month, visa.exp_year, visa.last_decline_code) == (10, 2026, "expired_card")
    assert visa.owner.email == "admin@fabrikam.example"
    invoice = Invoice.objects.get(account=fabrikam)
    assert (invoice.status, invoice.amount_due_minor) == ("past_due", 7200)
    assert invoice.due_on == timezone.localdate() - dt.timedelta(days=20)
    assert invoice.subscription.product.name == "Microsoft 365 Business Basic"
    assert invoice.subscription.quantity == 12


def test_northwind_pays_by_invoice_and_its_azure_subscription_is_disabled(demo):
    northwind = BillingAccount.objects.get(name="Northwind Traders")
    assert northwind.currency == "USD"
    assert northwind.pays_by_bank_transfer
    assert northwind.remittance_iban
    invoice = Invoice.objects.get(account=northwind)
    assert (invoice.status, invoice.amount_due_minor, invoice.currency) == ("past_due", 125000, "USD")
    assert invoice.due_on == timezone.localdate() - dt.timedelta(days=45)
    assert invoice.subscription.status == Subscription.Status.DISABLED
    assert not PaymentMethod.objects.filter(account=northwind).exists()


def test_operators_and_passwords(demo):
    support = User.objects.get(email="support@billing.example")
    assert support.is_staff
    assert not support.is_superuser
    assert support.groups.filter(name="Support staff").exists()
    assert not support.memberships.exists()
    assert User.objects.get(email="root@billing.example").is_superuser
    for user in User.objects.all():
        assert user.check_password("demo-pass-2026")


def test_demo_cards_are_known_to_the_simulated_bank(demo):
    for method in PaymentMethod.objects.all():
        card = SimCard.objects.get(token=method.gateway_token)
        assert card.number.endswith(method.last4)


def test_running_it_twice_duplicates_nothing(demo):
    counts = [
        m.objects.count() for m in (User, BillingAccount, Subscription, Invoice, PaymentMethod, SimCard)
    ]
    call_command("seed_demo", stdout=io.StringIO())
    assert [
        m.objects.count() for m in (User, BillingAccount, Subscription, Invoice, PaymentMethod, SimCard)
    ] == counts
