"""Issue 11 in Chromium, English and Dutch: branded error pages, the settle pane's pre-selection and its
new-card fields, the Home cards, Sent notifications. Screenshots: test-results/screenshots/polish-*.png."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from payments.models import PaymentMethod
from tests.pages_helpers import demo_account, seed_demo
from tests.test_browser_pages import _assert_accessible, _shot, _sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo_page(live_server, page: Page) -> Page:
    seed_demo()
    page.set_viewport_size({"width": 1440, "height": 900})
    return page


@pytest.mark.parametrize(
    ("email", "account_name", "lang"),
    [
        ("admin@contoso.example", "Contoso Ltd", "en"),
        ("admin@fabrikam.example", "Fabrikam BV", "nl"),
    ],
)
def test_error_pages_home_and_settle_pane_look_right(live_server, demo_page: Page, email, account_name, lang):
    page, base = demo_page, live_server.url
    account = demo_account(account_name)
    other = demo_account("Northwind Traders")
    _sign_in(page, base, email)

    _shot(page, f"polish-home-{lang}")
    _assert_accessible(page, f"home-{lang}")
    next_card = page.locator("section[aria-labelledby=card-next]")
    expect(next_card).not_to_contain_text("Nothing due" if lang == "en" else "Niets verschuldigd")

    # A foreign id: the branded 404 in the shell, in the person's language; never Django's pattern list.
    response = page.goto(f"{base}/a/{other.pk}/billing/invoices/")
    assert response is not None
    assert response.status == 404
    expect(page.locator("#shell")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "This page isn't here" if lang == "en" else "Deze pagina bestaat niet"
    )
    _shot(page, f"polish-404-{lang}")
    _assert_accessible(page, f"404-{lang}")
    response = page.goto(f"{base}/a/{account.pk}/billing/invoices/%00/")
    assert response is not None
    assert response.status == 404

    # The settle pane as a page (no JavaScript needed): a working card is pre-selected, never the declined
    # one, and the new-card fields stay hidden until "Add a new card" is chosen.
    declined = PaymentMethod.objects.filter(account=account, status="declined").first()
    assert declined is not None
    page.goto(f"{base}/a/{account.pk}/billing/settle/{declined.pk}/")
    expect(page.locator(f'input[name=method][value="{declined.pk}"]')).not_to_be_checked()
    number = page.locator("#id_number")
    expect(number).to_be_hidden()
    _shot(page, f"polish-settle-{lang}")
    page.locator('input[name=method][value="new"]').check()
    expect(number).to_be_visible()
    number.fill("4242 4242 4242 4241")
    page.locator("#id_exp_month").fill("13")
    page.locator("#id_holder_name").fill("Daan de Vries")
    page.locator("#settle-submit").click()
    summary = page.locator("#error-summary")
    expect(summary).to_be_visible()
    expect(summary.locator("li")).to_have_count(4)  # number, month, year, security code: all at once
    expect(page.locator("#id_holder_name")).to_have_value("Daan de Vries")  # kept
    expect(page.locator("#id_number")).to_have_value("")  # never echoed back
    _shot(page, f"polish-settle-errors-{lang}")

    page.goto(f"{base}/a/{account.pk}/billing/notifications/sent/")
    expect(
        page.get_by_role("heading", name=re.compile("Sent notifications|Verzonden meldingen"))
    ).to_have_count(1)
    _shot(page, f"polish-sent-{lang}")


def test_reader_gets_the_branded_403(live_server, demo_page: Page):
    page, base = demo_page, live_server.url
    contoso = demo_account("Contoso Ltd")
    _sign_in(page, base, "reader@contoso.example")
    response = page.goto(f"{base}/a/{contoso.pk}/billing/payment-methods/add/")
    assert response is not None
    assert response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("You don't have access to this")
    _shot(page, "polish-403-en")


@pytest.mark.parametrize("lang", ["en", "nl"])
def test_the_simulated_banks_3ds_page_is_clearly_the_banks(live_server, demo_page: Page, lang):
    from gateway_sim.models import SimCard, SimCharge

    card = SimCard.objects.order_by("pk").first()
    assert card is not None
    charge = SimCharge.objects.create(
        reference=f"sim_ch_shot_{lang}",
        idempotency_key=f"shot-{lang}",
        card=card,
        amount_minor=37650,
        currency="EUR",
        status=SimCharge.Status.REQUIRES_ACTION,
        language=lang,  # the charged account's language, sent with the charge
    )
    page = demo_page
    # The browser asks for the other language: the bank's page follows the account, not the browser.
    page.set_extra_http_headers({"Accept-Language": "nl" if lang == "en" else "en"})
    page.goto(f"{live_server.url}/gateway/simulated/3ds/{charge.reference}/")
    expect(page.locator(".bank-bar")).to_contain_text("Northbridge Bank")
    expect(page.locator("#shell")).to_have_count(0)  # not the portal's shell
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Confirm your payment" if lang == "en" else "Bevestig uw betaling"
    )
    _shot(page, f"polish-3ds-{lang}")
    _assert_accessible(page, f"3ds-{lang}")
