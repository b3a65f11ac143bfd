"""The Dutch catalogue is complete, and a Dutch billing account really sees Dutch.

Pages render in the billing account's preferred language (accounts.decorators), so the demo
account Fabrikam BV (language "nl") must read as Dutch while Contoso Ltd (language "en") stays
English. The compiled django.mo is committed, so these tests do not need gettext tools.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse
from django.utils import translation

from accounts.models import BillingAccount, User
from billing_portal.money import format_money
from notifications.services import notice_send
from payments.models import PaymentMethod

LOCALE_DIR = Path(settings.BASE_DIR) / "locale" / "nl" / "LC_MESSAGES"
PO_PATH = LOCALE_DIR / "django.po"
MO_PATH = LOCALE_DIR / "django.mo"
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%[sd]")


@pytest.fixture(autouse=True)
def _restore_language():
    """A Fabrikam page activates "nl" for the thread and nothing switches it back; later tests in
    this worker that call services directly would then get Dutch strings."""
    yield
    translation.deactivate()


def _catalog():
    with PO_PATH.open("rb") as po:
        return read_po(po, locale="nl")


def _as_tuple(value) -> tuple[str, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def test_dutch_catalogue_has_no_untranslated_or_fuzzy_entries():
    catalog = _catalog()
    entries = [message for message in catalog if message.id]
    assert entries, "the Dutch catalogue is empty"
    untranslated = [message.id for message in entries if not all(_as_tuple(message.string))]
    fuzzy = [message.id for message in entries if message.fuzzy]
    assert untranslated == [], f"untranslated entries: {untranslated}"
    assert fuzzy == [], f"fuzzy entries: {fuzzy}"


def test_dutch_catalogue_keeps_every_placeholder_and_plural_form():
    catalog = _catalog()
    assert catalog.num_plurals == 2
    for message in catalog:
        if not message.id:
            continue
        sources = _as_tuple(message.id)
        expected = set(PLACEHOLDER.findall(sources[0])) | set(PLACEHOLDER.findall(sources[-1]))
        translations = _as_tuple(message.string)
        if message.pluralizable:
            assert len(translations) == 2, message.id
        for text in translations:
            assert set(PLACEHOLDER.findall(text)) == expected, (message.id, text)


def test_compiled_catalogue_is_committed_and_not_older_than_the_po():
    assert MO_PATH.exists(), "run compilemessages and commit locale/nl/LC_MESSAGES/django.mo"
    from babel.messages.mofile import read_mo

    with MO_PATH.open("rb") as mo:
        # Babel's read_mo leaves msgctxt as bytes; normalise it to match read_po.
        compiled = {
            (_as_tuple(m.id)[0], m.context.decode() if isinstance(m.context, bytes) else m.context): m.string
            for m in read_mo(mo)
            if m.id
        }
    for message in _catalog():
        if message.id:
            key = (_as_tuple(message.id)[0], message.context)
            assert key in compiled, f"django.mo is stale; recompile: {message.id!r}"
            assert _as_tuple(compiled[key]) == _as_tuple(message.string), (
                f"django.mo is stale: {message.id!r}"
            )


# Microsoft's own Dutch terms (nl-NL billing docs), as the running site resolves them. This also
# catches another nl catalogue (an app's locale/ dir) shadowing the project one.
GLOSSARY = {
    "Billing": "Facturering",
    "Billing account": "Factureringsaccount",
    "Your products": "Uw producten",
    "Bills & payments": "Facturen en betalingen",
    "Invoices": "Facturen",
    "Payment methods": "Betalingsmethoden",
    "Payment method": "Betalingsmethode",
    "Billing notifications": "Factureringsmeldingen",
    "Settle balance": "Saldo vereffenen",
    "Pay now": "Nu betalen",
    "Subscription": "Abonnement",
    "Subscription has a past due payment": "Abonnement heeft een verschuldigd bedrag",
    "Past due": "Achterstallig",
    "Disabled": "Uitgeschakeld",
    "Declined": "Geweigerd",
    "Amount due": "Verschuldigd bedrag",
    "Billing admin": "Factureringsbeheerder",
    "Preferred language": "Voorkeurstaal",
}


@pytest.mark.parametrize(("english", "dutch"), GLOSSARY.items())
def test_glossary_terms_resolve_to_microsoft_dutch(english, dutch):
    with translation.override("nl"):
        assert translation.gettext(english) == dutch
    with translation.override("en"):
        assert translation.gettext(english) == english


@pytest.fixture
def demo(db):
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    return {
        "fabrikam": BillingAccount.objects.get(name="Fabrikam BV"),
        "contoso": BillingAccount.objects.get(name="Contoso Ltd"),
    }


def _page(client, email: str, view: str, account: BillingAccount) -> str:
    client.force_login(User.objects.get(email=email))
    response = client.get(reverse(view, kwargs={"account_id": account.pk}))
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_fabrikam_admin_sees_home_in_dutch(client, demo):
    html = _page(client, "admin@fabrikam.example", "accounts:home", demo["fabrikam"])
    assert '<html lang="nl"' in html or 'lang="nl"' in html
    for dutch in (
        "Facturering",
        "Uw producten",
        "Facturen en betalingen",
        "Betalingsmethoden",
        "Factureringsmeldingen",
        "Abonnementen",
        "Standaardbetalingsmethode",
        "U hebt een achterstallig saldo van €\xa072,00.",
        "Uw rol: Eigenaar van factureringsaccount",
    ):
        assert dutch in html, dutch
    for english in ("Your products", "Bills &amp; payments", "Payment methods", "past due balance"):
        assert english not in html, english


@pytest.mark.django_db
def test_fabrikam_admin_sees_your_products_in_dutch(client, demo):
    html = _page(client, "admin@fabrikam.example", "subscriptions:products", demo["fabrikam"])
    for dutch in (
        "Uw producten",
        "Abonnementen van Fabrikam BV",
        "Licenties",
        "Prijs per periode",
        "Verlengingsdatum",
        "Abonnement heeft een verschuldigd bedrag",
        "Achterstallig",
        "Geweigerd",
        "Microsoft 365 Business Basic",  # product names stay untranslated
        "€\xa072,00",
    ):
        assert dutch in html, dutch
    for english in (
        "Your products",
        "Licenses",
        "Licences",
        "Renewal date",
        "Subscription has a past due payment",
    ):
        assert english not in html, english


@pytest.mark.django_db
def test_contoso_admin_still_sees_english(client, demo):
    home = _page(client, "admin@contoso.example", "accounts:home", demo["contoso"])
    assert "Your products" in home
    assert "Bills &amp; payments" in home
    assert "You have a past due balance of" in home
    assert "Uw producten" not in home
    assert "Facturering" not in home

    products = _page(client, "admin@contoso.example", "subscriptions:products", demo["contoso"])
    assert "Subscription has a past due payment" in products
    assert "Renewal date" in products
    assert "Licenses" in products  # US spelling, as the admin center writes it
    assert "Abonnement heeft een verschuldigd bedrag" not in products


@pytest.mark.django_db
def test_fabrikam_receipt_mail_is_dutch(demo, django_capture_on_commit_callbacks, mailoutbox):
    fabrikam = demo["fabrikam"]
    with django_capture_on_commit_callbacks(execute=True):
        notice_send(
            account=fabrikam,
            kind="payment_received",
            dedupe_key="i18n-test",
            context={
                "reference": "PAY-TEST",
                "amount": format_money(7200, "EUR", fabrikam.language),
                "method": "Visa",
                "invoices": "INV-2026-200001",
                "paid_on": "2026-11-24",
            },
        )
    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.subject == "Betaling ontvangen: €\xa072,00 (PAY-TEST)"
    assert "Beste Fabrikam BV," in message.body
    assert "We hebben uw betaling van €\xa072,00 ontvangen. Hartelijk dank." in message.body
    assert "Betalingskenmerk: PAY-TEST" in message.body
    assert "We received" not in message.body


@pytest.mark.django_db
def test_settle_balance_and_pay_now_panes_are_dutch_for_fabrikam(client, demo):
    fabrikam = demo["fabrikam"]
    client.force_login(User.objects.get(email="admin@fabrikam.example"))
    declined = PaymentMethod.objects.get(account=fabrikam, status=PaymentMethod.Status.DECLINED)
    settle = client.get(reverse("payments:settle", args=[fabrikam.pk, declined.pk]))
    assert settle.status_code == 200
    html = settle.content.decode()
    for dutch in (
        "Saldo vereffenen",
        "Betalingsmethode selecteren",
        "Een nieuwe kaart toevoegen",
        "€\xa072,00",
    ):
        assert dutch in html, dutch
    assert "Settle balance" not in html

    invoice = fabrikam.invoices.get(number="INV-2026-200001")
    pay = client.get(reverse("payments:invoice_pay", args=[fabrikam.pk, invoice.number]))
    assert pay.status_code == 200
    html = pay.content.decode()
    for dutch in ("Nu betalen", "Factuur INV-2026-200001 betalen", "Verschuldigd bedrag", "€\xa072,00"):
        assert dutch in html, dutch
    assert "Pay now" not in html
