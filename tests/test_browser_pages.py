"""The pages in Chromium: the demo's past-due story, the side pane, and axe-core on every page.

Screenshots land in test-results/screenshots/<name>.png.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.pages_helpers import demo_account, seed_demo

SHOTS = Path(__file__).resolve().parent.parent / "test-results" / "screenshots"
PASSWORD = "demo-pass-2026"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _assert_accessible(page: Page, name: str) -> None:
    results = Axe().run(page)
    serious = [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not serious, f"{name}: {serious}"


def _sign_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/sign-in/")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/a/\d+/$"))


def test_admin_sees_the_past_due_story_on_every_page(live_server, demo_page: Page):
    page = demo_page
    base = live_server.url
    contoso = demo_account("Contoso Ltd")

    page.goto(f"{base}/sign-in/")
    _shot(page, "sign-in")
    _assert_accessible(page, "sign-in")

    _sign_in(page, base, "admin@contoso.example")
    banner = page.locator("#past-due-banner")
    expect(banner).to_contain_text("€376.50 past due on Visa ending 0341")
    expect(page.get_by_role("heading", level=1)).to_have_text("Contoso Ltd")
    _shot(page, "home")
    _assert_accessible(page, "home")

    page.get_by_role("navigation", name="Main navigation").get_by_role("link", name="Your products").click()
    expect(page).to_have_url(f"{base}/a/{contoso.pk}/products/")
    past_due_rows = page.locator("tbody tr", has_text="Subscription has a past due payment")
    for product in ("Microsoft 365 Business Standard", "Exchange Online (Plan 1)", "Power BI Pro"):
        expect(past_due_rows.filter(has_text=product)).to_have_count(1)
    _shot(page, "your-products")
    _assert_accessible(page, "your-products")

    page.get_by_role("link", name="Bills & payments").click()
    expect(page.get_by_role("link", name="INV-2026-100001", exact=True)).to_be_visible()
    _shot(page, "invoices")
    _assert_accessible(page, "invoices")

    page.get_by_role("link", name="INV-2026-100001", exact=True).click()
    expect(page.get_by_text("Payment terms: Due on receipt")).to_be_visible()
    _shot(page, "invoice-detail")
    _assert_accessible(page, "invoice-detail")

    page.goto(f"{base}/a/{contoso.pk}/billing/invoices/")
    page.get_by_role("navigation", name="Bills & payments").get_by_role(
        "link", name="Payment methods"
    ).click()
    warning = page.get_by_role("alert").filter(has_text="Visa ending 0341")
    expect(warning).to_contain_text("Your Visa ending 0341 was declined (card declined).")
    expect(warning).to_contain_text("€376.50")
    _shot(page, "payment-methods")
    _assert_accessible(page, "payment-methods")

    page.get_by_role("link", name="Billing notifications").first.click()
    expect(page.locator("#notification-email")).to_have_text("billing@contoso.example")
    _shot(page, "billing-notifications")
    _assert_accessible(page, "billing-notifications")
    assert page.errors == []


def test_side_pane_opens_keeps_focus_and_saves(live_server, demo_page: Page):
    page = demo_page
    base = live_server.url
    contoso = demo_account("Contoso Ltd")
    _sign_in(page, base, "finance@contoso.example")
    page.goto(f"{base}/a/{contoso.pk}/billing/notifications/")

    opener = page.get_by_role("link", name="Edit notification settings")
    opener.click()
    pane = page.get_by_role("dialog", name="Edit notification settings")
    expect(pane).to_be_visible()
    expect(page.get_by_label("Billing notification address")).to_be_focused()
    expect(page.locator("#side-pane-host")).not_to_have_class(re.compile("is-entering"))
    _shot(page, "pane-notifications")
    _assert_accessible(page, "pane-notifications")

    # Tab stays inside the pane.
    for _ in range(6):
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.closest('#side-pane') !== null")
    page.keyboard.press("Escape")
    expect(page.locator("#side-pane-host")).to_be_hidden()
    expect(opener).to_be_focused()

    opener.click()
    expect(pane).to_be_visible()
    pane.get_by_role("link", name="Cancel").click()
    expect(page.locator("#side-pane-host")).to_be_hidden()
    expect(opener).to_be_focused()

    opener.click()
    expect(pane).to_be_visible()
    page.get_by_label("Billing notification address").fill("not an address")
    page.get_by_role("button", name="Save").click()
    expect(pane.locator(".field__error")).to_contain_text("Enter a valid e-mail address")
    _shot(page, "pane-notifications-error")

    page.get_by_label("Billing notification address").fill("ap@contoso.example")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#side-pane-host")).to_be_hidden()
    expect(page.locator("#notification-email")).to_have_text("ap@contoso.example")
    expect(page.get_by_role("link", name="Edit notification settings")).to_be_focused()
    expect(page.locator("#messages")).to_contain_text("Billing notifications will go to ap@contoso.example.")
    _shot(page, "notifications-saved")
    assert page.errors == []


def test_pane_url_works_as_a_page_without_javascript(live_server, browser):
    seed_demo()
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    contoso = demo_account("Contoso Ltd")
    _sign_in(page, live_server.url, "admin@contoso.example")
    page.goto(f"{live_server.url}/a/{contoso.pk}/billing/notifications/edit/")
    page.get_by_label("Billing notification address").fill("billing-team@contoso.example")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#notification-email")).to_have_text("billing-team@contoso.example")
    _shot(page, "pane-as-page-saved")
    context.close()


def test_dutch_account_reads_in_dutch_formats(live_server, demo_page: Page):
    page = demo_page
    _sign_in(page, live_server.url, "admin@fabrikam.example")
    expect(page.locator("#past-due-banner")).to_contain_text("€\u00a072,00")
    _shot(page, "home-fabrikam-nl")
    _assert_accessible(page, "home-fabrikam-nl")


def test_bank_transfer_invoice_shows_how_to_pay(live_server, demo_page: Page):
    page = demo_page
    northwind = demo_account("Northwind Traders")
    _sign_in(page, live_server.url, "admin@northwind.example")
    page.goto(f"{live_server.url}/a/{northwind.pk}/billing/invoices/INV-2026-300001/")
    expect(page.get_by_role("heading", name="How to pay")).to_be_visible()
    _shot(page, "invoice-bank-transfer")
    _assert_accessible(page, "invoice-bank-transfer")
    page.goto(f"{live_server.url}/a/{northwind.pk}/products/")
    _shot(page, "your-products-disabled")
    _assert_accessible(page, "your-products-disabled")


def test_balance_changed_event_refreshes_the_banner(live_server, demo_page: Page):
    """The contract with the payments branch: an HX-Trigger balanceChanged makes the page re-read balances."""
    from django.utils import timezone

    from subscriptions.models import Invoice

    page = demo_page
    _sign_in(page, live_server.url, "admin@contoso.example")
    expect(page.locator("#past-due-banner")).to_contain_text("€390.50")
    Invoice.objects.filter(number="INV-2026-100004").update(
        status="paid", amount_due_minor=0, paid_at=timezone.now()
    )
    page.evaluate("document.body.dispatchEvent(new CustomEvent('balanceChanged'))")
    expect(page.locator("#past-due-banner")).to_contain_text("€376.50")
    expect(page.locator("#past-due-banner")).not_to_contain_text("€390.50")


def test_settle_balance_and_pay_now_open_in_the_side_pane(live_server, demo_page: Page):
    page = demo_page
    contoso = demo_account("Contoso Ltd")
    _sign_in(page, live_server.url, "admin@contoso.example")

    banner_item = page.locator("#past-due-banner li", has_text="Visa ending 0341")
    opener = banner_item.get_by_role("link", name="Settle balance")
    opener.click()
    pane = page.locator("#side-pane .pane")
    expect(pane).to_be_visible()
    expect(pane).to_contain_text("€376.50")
    expect(page.locator("#side-pane-host")).not_to_have_class(re.compile("is-entering"))
    _shot(page, "pane-settle-balance")
    _assert_accessible(page, "pane-settle-balance")
    page.keyboard.press("Escape")
    expect(page.locator("#side-pane-host")).to_be_hidden()
    expect(opener).to_be_focused()

    page.goto(f"{live_server.url}/a/{contoso.pk}/billing/invoices/")
    page.locator("tr", has_text="INV-2026-100005").get_by_role("link", name="Pay now").click()
    expect(pane).to_be_visible()
    expect(pane).to_contain_text("€36.00")
    expect(page.locator("#side-pane-host")).not_to_have_class(re.compile("is-entering"))
    _shot(page, "pane-pay-now")
    _assert_accessible(page, "pane-pay-now")
    pane.get_by_role("link", name="Cancel").click()
    expect(page.locator("#side-pane-host")).to_be_hidden()
    assert page.errors == []


def test_readers_get_no_settle_or_pay_actions(live_server, demo_page: Page):
    page = demo_page
    contoso = demo_account("Contoso Ltd")
    _sign_in(page, live_server.url, "reader@contoso.example")
    expect(page.locator("#past-due-banner")).to_contain_text("€376.50")
    expect(page.get_by_role("link", name="Settle balance")).to_have_count(0)
    page.goto(f"{live_server.url}/a/{contoso.pk}/billing/invoices/")
    expect(page.get_by_role("link", name="Pay now")).to_have_count(0)


def test_settling_in_the_pane_updates_the_page_behind_it(live_server, demo_page: Page):
    """End to end through the shell: Settle balance with the Mastercard; balanceChanged refreshes the banner."""
    page = demo_page
    _sign_in(page, live_server.url, "admin@contoso.example")
    page.locator("#past-due-banner li", has_text="Visa ending 0341").get_by_role(
        "link", name="Settle balance"
    ).click()
    pane = page.locator("#side-pane .pane")
    expect(pane).to_be_visible()
    pane.get_by_label(re.compile("Mastercard ending 4444")).check()
    expect(pane).to_contain_text("€390.50")  # the chosen card's own past-due €14.00 is added
    pane.get_by_role("button", name="Settle balance").click()
    expect(page.locator("#past-due-banner")).not_to_contain_text("Visa ending 0341", timeout=10_000)
    _shot(page, "pane-settle-done")
    page.keyboard.press("Escape")
    expect(page.locator("#side-pane-host")).to_be_hidden()
    expect(page.locator("#past-due-banner")).not_to_contain_text("past due balance")
    expect(page.locator("#home-body")).to_contain_text("All paid up")
