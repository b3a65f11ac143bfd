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

from accounts.models import BillingAccount, User

LOCALE_DIR = Path(settings.BASE_DIR) / "locale" / "nl" / "LC_MESSAGES"
PO_PATH = LOCALE_DIR / "django.po"
MO_PATH = LOCALE_DIR / "django.mo"
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%[sd]")


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
        for translation in translations:
            assert set(PLACEHOLDER.findall(translation)) == expected, (message.id, translation)


def test_compiled_catalogue_is_committed_and_not_older_than_the_po():
    assert MO_PATH.exists(), "run compilemessages and commit locale/nl/LC_MESSAGES/django.mo"
    from babel.messages.mofile import read_mo

    with MO_PATH.open("rb") as mo:
        compiled = read_mo(mo)
    catalog = _catalog()
    for message in catalog:
        if message.id:
            assert message.id in compiled, f"django.mo is stale; recompile: {message.id!r}"
            assert _as_tuple(compiled[message.id].string) == _as_tuple(message.string), (
                f"django.mo is stale; recompile: {message.id!r}"
            )


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
    for english in ("Your products", "Licences", "Renewal date", "Subscription has a past due payment"):
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
    assert "Abonnement heeft een verschuldigd bedrag" not in products
