"""The seed flows in Chromium: settle, add a card, 3-D Secure, Pay now, readers."""

import re

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from playwright.sync_api import Page, expect

from accounts.models import BillingAccount, User
from gateway_sim.models import SimCharge
from payments.models import PaymentAttempt, PaymentMethod
from subscriptions.models import Invoice, Subscription

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(db):
    call_command("seed_demo", verbosity=0)
    account = BillingAccount.objects.get(domain="contoso.example")
    return {
        "account": account,
        "visa": PaymentMethod.objects.get(account=account, last4="0341"),
        "mastercard": PaymentMethod.objects.get(account=account, last4="4444"),
    }


def sign_in(page: Page, live_server, email: str) -> None:
    client = Client()
    client.force_login(User.objects.get(email=email))
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": live_server.url}]
    )


def settle_url(live_server, demo) -> str:
    return f"{live_server.url}/a/{demo['account'].pk}/billing/settle/{demo['visa'].pk}/"


def test_admin_settles_the_visa_balance_with_the_mastercard(page: Page, live_server, demo):
    sign_in(page, live_server, "admin@contoso.example")
    page.goto(f"{live_server.url}/a/{demo['account'].pk}/products/")
    product_list = page.locator("#product-list")
    expect(product_list.get_by_text("Subscription has a past due payment")).to_have_count(4)
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    product_list.get_by_role("link", name="Settle balance").first.click()
    pane = page.locator("#side-pane .pane")
    expect(pane).to_be_visible()
    # The working Mastercard is pre-selected (never the declined Visa), its own €14.00 included.
    expect(pane.locator("#settle-total")).to_have_text("€390.50")
    pane.get_by_label(re.compile("Mastercard ending 4444")).check()
    expect(pane.locator("#settle-total")).to_have_text("€390.50")
    expect(pane.locator("#chosen-method-charges")).to_contain_text("€14.00")
    # A double click sends one request: the button disables itself while it works.
    pane.locator("#settle-submit").dblclick()
    expect(pane.get_by_text("Payment received").first).to_be_visible()
    reference = pane.locator("#receipt-reference").inner_text()
    assert reference.startswith("PAY-")
    # The product list behind the pane updated itself, without a reload.
    expect(product_list.get_by_text("Subscription has a past due payment")).to_have_count(0)
    assert page.evaluate("window.__sameDocument") is True
    assert SimCharge.objects.count() == 1
    attempt = PaymentAttempt.objects.get(status=PaymentAttempt.Status.SUCCEEDED)
    assert attempt.amount_minor == 39050
    subs = Subscription.objects.filter(
        account=demo["account"],
        product__code__in=[
            "m365-business-standard",
            "exchange-online-plan-1",
            "power-bi-pro",
            "visio-plan-2",
        ],
    )
    assert {s.status for s in subs} == {"active"}
    assert {s.payment_method_id for s in subs} == {demo["mastercard"].pk}
    # The declined-card warning on Payment methods is gone.
    pane.locator("[data-pane-close]").first.click()
    page.goto(f"{live_server.url}/a/{demo['account'].pk}/billing/payment-methods/")
    expect(page.get_by_text("Your Visa ending 0341 was declined")).to_have_count(0)


def test_finance_adds_a_card_and_settles(page: Page, live_server, demo):
    sign_in(page, live_server, "finance@contoso.example")
    page.goto(settle_url(live_server, demo))
    expect(page.get_by_text("Update the expiry date")).to_have_count(0)
    expect(page.locator("input[name=exp_month]")).to_have_count(1)  # only the new-card field
    page.get_by_label("Add a new card").check()
    page.get_by_label("Card number").fill("4242 4242 4242 4241")
    page.get_by_label("Expiry month").fill("12")
    page.get_by_label("Expiry year").fill("2031")
    page.get_by_label("Security code").fill("123")
    page.locator("#settle-submit").click()
    expect(page.get_by_text("This card number is not valid")).to_be_visible()
    assert not PaymentAttempt.objects.filter(status="succeeded").exists()
    page.get_by_label("Add a new card").check()
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry month").fill("12")
    page.get_by_label("Expiry year").fill("2031")
    page.get_by_label("Security code").fill("123")
    page.locator("#settle-submit").click()
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    attempt = PaymentAttempt.objects.get(status=PaymentAttempt.Status.SUCCEEDED)
    assert attempt.amount_minor == 37650
    assert attempt.payment_method.last4 == "4242"


def _settle_with_3ds_card(page: Page, live_server, demo) -> None:
    sign_in(page, live_server, "finance@contoso.example")
    page.goto(settle_url(live_server, demo))
    page.get_by_label("Add a new card").check()
    page.get_by_label("Card number").fill("4000 0025 0000 3155")
    page.get_by_label("Expiry month").fill("12")
    page.get_by_label("Expiry year").fill("2031")
    page.get_by_label("Security code").fill("123")
    page.locator("#settle-submit").click()
    expect(page.get_by_role("heading", name="Confirm your payment")).to_be_visible()
    expect(page.get_by_text("€376.50")).to_be_visible()


def test_3ds_card_completes_the_challenge_and_settles(page: Page, live_server, demo):
    _settle_with_3ds_card(page, live_server, demo)
    page.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    assert Invoice.objects.filter(account=demo["account"], status="paid").count() == 3


def test_3ds_failed_challenge_pays_nothing(page: Page, live_server, demo):
    _settle_with_3ds_card(page, live_server, demo)
    page.get_by_role("button", name="Fail authentication").click()
    expect(page.locator(".msgbar--error")).to_contain_text("nothing was paid")  # said once (issue 11)
    expect(page.get_by_role("link", name="Try again")).to_be_visible()
    assert Invoice.objects.filter(account=demo["account"], status="paid").count() == 0
    assert Invoice.objects.filter(account=demo["account"], status="past_due").count() == 4


def test_pay_now_on_the_teams_invoice(page: Page, live_server, demo):
    sign_in(page, live_server, "admin@contoso.example")
    invoice = Invoice.objects.get(account=demo["account"], subscription__product__code="teams-essentials")
    page.goto(f"{live_server.url}/a/{demo['account'].pk}/billing/invoices/")
    row = page.locator("tr", has_text=invoice.number)
    row.get_by_role("link", name="Pay now").click()
    pane = page.locator("#side-pane .pane")
    expect(pane.locator("#pay-total")).to_have_text("€36.00")
    pane.get_by_label(re.compile("Mastercard ending 4444")).check()
    pane.locator("#pay-submit").click()
    expect(pane.get_by_text("Payment received").first).to_be_visible()
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert PaymentAttempt.objects.get(status="succeeded").amount_minor == 3600


def test_reader_sees_no_pay_actions(page: Page, live_server, demo):
    sign_in(page, live_server, "reader@contoso.example")
    base = f"{live_server.url}/a/{demo['account'].pk}"
    for path in ("/", "/products/", "/billing/invoices/", "/billing/payment-methods/"):
        page.goto(base + path)
        expect(page.get_by_role("link", name="Settle balance")).to_have_count(0)
        expect(page.get_by_role("link", name="Pay now")).to_have_count(0)
    page.goto(settle_url(live_server, demo))
    expect(page.get_by_text("Only billing account owners and billing admins")).to_be_visible()
    expect(page.locator("#settle-submit")).to_have_count(0)
    expect(page.locator("input[name=method]")).to_have_count(0)
    invoice = Invoice.objects.get(account=demo["account"], subscription__product__code="teams-essentials")
    page.goto(f"{base}/billing/invoices/{invoice.number}/pay/")
    expect(page.locator("#pay-submit")).to_have_count(0)


def test_fabrikam_owner_fixes_the_expiry_and_the_same_card_pays(page: Page, live_server, demo):
    fabrikam = BillingAccount.objects.get(domain="fabrikam.example")
    visa = PaymentMethod.objects.get(account=fabrikam, last4="1881")
    sign_in(page, live_server, "admin@fabrikam.example")
    page.goto(f"{live_server.url}/a/{fabrikam.pk}/billing/settle/{visa.pk}/")
    expect(page.locator("#settle-total")).to_contain_text("72,00")
    # Fabrikam's language is Dutch: the pane speaks it and formats € 72,00 the Dutch way.
    page.get_by_label("Nieuw vervaljaar").fill("2029")
    page.get_by_role("button", name="Vervaldatum opslaan").click()
    expect(page.get_by_text("is nu 10/2029")).to_be_visible()
    page.locator("#settle-submit").click()
    expect(page.locator("#receipt-reference")).to_be_visible()
    visa.refresh_from_db()
    assert (visa.exp_year, visa.status) == (2029, "valid")
    assert Invoice.objects.filter(account=fabrikam, status="paid").count() == 1


def test_settle_and_pay_panes_have_no_serious_accessibility_violations(page: Page, live_server, demo):
    from axe_playwright_python.sync_playwright import Axe

    sign_in(page, live_server, "admin@contoso.example")
    invoice = Invoice.objects.get(account=demo["account"], subscription__product__code="teams-essentials")
    for url in (
        settle_url(live_server, demo) + f"?method={demo['mastercard'].pk}",
        f"{live_server.url}/a/{demo['account'].pk}/billing/invoices/{invoice.number}/pay/",
    ):
        page.goto(url)
        results = Axe().run(page)
        serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        assert serious == [], [(v["id"], v["help"], [n["html"] for n in v["nodes"]][:3]) for v in serious]
