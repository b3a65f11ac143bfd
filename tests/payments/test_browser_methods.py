"""Managing payment methods, the billing profile and billing-mail recipients, in Chromium.

Walks the demo's Contoso account as its owner: add a card, make it the active payment method (by
keyboard), replace the declined Visa for all items, edit a card, delete a card with a replacement,
edit the billing profile and the recipients; axe-core on every page and pane.
Screenshots land in test-results/screenshots/pm-*.png.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from payments.models import PaymentMethod
from subscriptions.models import Subscription
from tests.pages_helpers import demo_account, seed_demo
from tests.test_browser_pages import _assert_accessible, _shot, _sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _row(page: Page, label: str):
    return page.locator("#payment-method-list tbody tr", has_text=label)


def _menu(page: Page, label: str):
    return page.get_by_role("group").filter(
        has=page.locator(f"summary[aria-label='More actions for {label}']")
    )


def _pane_done(page: Page) -> None:
    expect(page.locator("#side-pane-host")).to_be_hidden()


def test_owner_manages_cards_profile_and_recipients(live_server, demo_page: Page):
    page = demo_page
    base = live_server.url
    contoso = demo_account("Contoso Ltd")
    _sign_in(page, base, "admin@contoso.example")
    page.goto(f"{base}/a/{contoso.pk}/billing/payment-methods/")

    # The table, the declined Visa's warning and the Mastercard's own €14 past due.
    expect(page.get_by_role("alert").filter(has_text="Visa ending 0341")).to_contain_text("declined")
    expect(
        page.get_by_role("alert").filter(has_text="Mastercard ending 4444 has a past due charge")
    ).to_contain_text("€14.00")
    _shot(page, "pm-payment-methods-table")
    _assert_accessible(page, "pm-payment-methods-table")

    # Add a card to move things to.
    page.get_by_role("link", name="Add a payment method").click()
    pane = page.get_by_role("dialog", name="Add a payment method")
    expect(pane).to_be_visible()
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry month").fill("11")
    page.get_by_label("Expiry year").fill("2031")
    page.get_by_label("Security code").fill("123")
    page.get_by_role("button", name="Add card").click()
    _pane_done(page)
    expect(_row(page, "Visa ending 4242")).to_be_visible()

    # Make it the active payment method, with the keyboard only.
    summary = page.locator("summary[aria-label='More actions for Visa ending 4242']")
    summary.focus()
    page.keyboard.press("Enter")
    item = page.get_by_role("button", name="Make this my active payment method")
    expect(item).to_be_visible()
    _shot(page, "pm-row-menu-open")
    _assert_accessible(page, "pm-row-menu-open")
    item.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#messages")).to_contain_text("Visa ending 4242 is now your active payment method.")
    expect(_row(page, "Visa ending 4242")).to_contain_text("Default")
    expect(_row(page, "Mastercard ending 4444")).not_to_contain_text("Default")

    # Replace payment method for all items: the declined Visa's three subscriptions move, nothing is paid.
    page.locator("summary[aria-label='More actions for Visa ending 0341']").click()
    page.get_by_role("link", name="Replace payment method for all items").click()
    pane = page.get_by_role("dialog", name="Replace payment method for all items")
    expect(pane).to_be_visible()
    expect(pane).to_contain_text("3 subscriptions are paid with Visa ending 0341")
    pane.get_by_role("button", name="Replace").click()  # nothing chosen: a message, the pane stays
    expect(pane.locator(".field__error")).to_contain_text("Choose the card that pays these subscriptions.")
    pane.get_by_label(re.compile("Visa ending 4242")).check()
    _shot(page, "pm-pane-replace-all")
    _assert_accessible(page, "pm-pane-replace-all")
    pane.get_by_role("button", name="Replace").click()
    _pane_done(page)
    expect(page.locator("#messages")).to_contain_text(
        "3 subscriptions now use Visa ending 4242. Nothing was charged."
    )
    expect(_row(page, "Visa ending 0341")).to_contain_text("No subscriptions")

    # Edit the Visa the owner added: name, address, country by name; the number is not a field.
    page.locator("summary[aria-label='More actions for Visa ending 0341']").click()
    page.get_by_role("link", name="Edit", exact=True).click()
    pane = page.get_by_role("dialog", name="Edit Visa ending 0341")
    expect(pane).to_be_visible()
    expect(pane.get_by_label("Card number")).to_have_count(0)
    pane.get_by_label("Name on card").fill("Megan Bowen")
    pane.get_by_label("Address", exact=True).fill("Herengracht 1")
    pane.get_by_label("Postal code").fill("1015 BA")
    pane.get_by_label("City").fill("Amsterdam")
    pane.get_by_label("Country or region").select_option(label="Netherlands")
    pane.get_by_label("Expiry month").fill("13")
    pane.get_by_role("button", name="Save").click()
    expect(pane).to_contain_text("1 to 12")
    expect(pane.get_by_label("City")).to_have_value("Amsterdam")  # what was typed is kept
    pane.get_by_label("Expiry month").fill("08")
    _shot(page, "pm-pane-edit")
    _assert_accessible(page, "pm-pane-edit")
    pane.get_by_role("button", name="Save").click()
    _pane_done(page)
    expect(page.locator("#messages")).to_contain_text("Visa ending 0341 was saved.")

    # Delete the Mastercard: it pays Visio and Teams, so the pane asks for the replacement first.
    page.locator("summary[aria-label='More actions for Mastercard ending 4444']").click()
    page.get_by_role("link", name="Delete", exact=True).click()
    pane = page.get_by_role("dialog", name="Delete Mastercard ending 4444")
    expect(pane).to_be_visible()
    pane.get_by_label(re.compile("Visa ending 4242")).check()
    _shot(page, "pm-pane-delete")
    _assert_accessible(page, "pm-pane-delete")
    pane.get_by_role("button", name="Delete").click()
    _pane_done(page)
    expect(page.locator("#messages")).to_contain_text("Mastercard ending 4444 was deleted.")
    expect(_row(page, "Mastercard ending 4444")).to_have_count(0)
    _shot(page, "pm-payment-methods-after")
    master = PaymentMethod.objects.get(account=contoso, last4="4444")
    assert master.is_removed
    assert not Subscription.objects.filter(payment_method=master).exists()

    # Your products: "…" → Replace payment method on one subscription.
    page.get_by_role("navigation", name="Main navigation").get_by_role("link", name="Your products").click()
    page.locator("summary[aria-label='More actions for Power BI Pro']").click()
    page.get_by_role("link", name="Replace payment method").click()
    pane = page.get_by_role("dialog", name="Replace payment method")
    expect(pane).to_contain_text("Power BI Pro")
    pane.get_by_label(re.compile("Visa ending 0341")).check()
    _shot(page, "pm-pane-replace-one")
    _assert_accessible(page, "pm-pane-replace-one")
    pane.get_by_role("button", name="Replace").click()
    _pane_done(page)
    expect(page.locator("#messages")).to_contain_text("Power BI Pro now uses Visa ending 0341.")

    # Billing profile tab.
    page.goto(f"{base}/a/{contoso.pk}/billing/payment-methods/")
    page.get_by_role("navigation", name="Bills & payments").get_by_role(
        "link", name="Billing profile"
    ).click()
    expect(page.locator("#billing-profile")).to_contain_text("EUR")
    _shot(page, "pm-billing-profile")
    _assert_accessible(page, "pm-billing-profile")
    page.get_by_role("link", name="Edit billing profile").click()
    pane = page.get_by_role("dialog", name="Edit billing profile")
    expect(pane).to_be_visible()
    pane.get_by_label("City").fill("")
    pane.get_by_label("PO number").fill("PO-4711")
    pane.get_by_role("button", name="Save").click()
    expect(pane).to_contain_text("Enter the city.")
    expect(pane.get_by_label("PO number")).to_have_value("PO-4711")
    pane.get_by_label("City").fill("Redmond")
    pane.get_by_label("Get invoices in e-mail attachments").check()
    _shot(page, "pm-pane-billing-profile")
    _assert_accessible(page, "pm-pane-billing-profile")
    pane.get_by_role("button", name="Save").click()
    _pane_done(page)
    expect(page.locator("#po-number")).to_have_text("PO-4711")
    expect(page.locator("#attachments")).to_contain_text("On")

    # Billing notifications → Edit recipients.
    page.get_by_role("link", name="Billing notifications").first.click()
    page.get_by_role("link", name="Edit recipients").click()
    pane = page.get_by_role("dialog", name="Edit recipients")
    pane.get_by_label("Additional recipients").fill("ap@contoso.example\nnot-an-address")
    pane.get_by_role("button", name="Save").click()
    expect(pane).to_contain_text("These are not e-mail addresses: not-an-address")
    pane.get_by_label("Additional recipients").fill("ap@contoso.example\ncfo@contoso.example")
    _shot(page, "pm-pane-recipients")
    _assert_accessible(page, "pm-pane-recipients")
    pane.get_by_role("button", name="Save").click()
    _pane_done(page)
    expect(page.locator("#additional-recipients")).to_contain_text("cfo@contoso.example")
    _shot(page, "pm-notifications-recipients")
    _assert_accessible(page, "pm-notifications-recipients")
    assert page.errors == []


def test_dutch_owner_sees_the_expired_card_and_panes_in_dutch(live_server, demo_page: Page):
    page = demo_page
    fabrikam = demo_account("Fabrikam BV")
    _sign_in(page, live_server.url, "admin@fabrikam.example")
    page.goto(f"{live_server.url}/a/{fabrikam.pk}/billing/payment-methods/")
    expect(page.locator("#payment-method-list")).to_contain_text("Verlopen 10/2026")
    _shot(page, "pm-payment-methods-nl")
    _assert_accessible(page, "pm-payment-methods-nl")
    page.goto(f"{live_server.url}/a/{fabrikam.pk}/billing/profile/")
    expect(page.locator("#billing-profile")).to_contain_text("Nederland")
    _shot(page, "pm-billing-profile-nl")


def test_card_panes_work_as_pages_without_javascript(live_server, browser):
    seed_demo()
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    contoso = demo_account("Contoso Ltd")
    _sign_in(page, live_server.url, "admin@contoso.example")
    page.goto(f"{live_server.url}/a/{contoso.pk}/billing/payment-methods/")
    # <details> menus open without JavaScript too.
    page.locator("summary[aria-label='More actions for Visa ending 0341']").click()
    page.get_by_role("button", name="Make this my active payment method").click()
    expect(page.locator("#messages")).to_contain_text("Visa ending 0341 is now your active payment method.")
    visa = PaymentMethod.objects.get(account=contoso, last4="0341")
    master = PaymentMethod.objects.get(account=contoso, last4="4444")
    page.goto(f"{live_server.url}/a/{contoso.pk}/billing/payment-methods/{master.pk}/replace/")
    page.get_by_label(re.compile("Visa ending 0341")).check()
    page.get_by_role("button", name="Replace").click()
    expect(page.locator("#messages")).to_contain_text("now use Visa ending 0341")
    _shot(page, "pm-no-js-replaced")
    assert Subscription.objects.filter(payment_method=visa).count() == 5
    context.close()
