"""Every customer page and pane, and the support console, in Chromium: English (Contoso) and Dutch (Fabrikam),
at a desktop and a phone width. Each visit leaves a screenshot in test-results/screenshots/tour-*.png (not
committed: people look at them) and asserts the look's structural rules from issue 11 / shared/DESIGN.md:

- one primary (filled) action per page, and exactly one in a pane that has something to submit;
- Settle balance inside tables and message bars is a link (`<a>`), never a button;
- table rows with actions carry a "…" row menu or a details link, never a row of filled buttons;
- nothing runs wider than the viewport (a truncated Dutch label or a table pushing the page sideways).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from accounts.models import BillingAccount, Membership, Role
from payments.models import PaymentAttempt, PaymentMethod
from subscriptions.models import Invoice, Subscription
from tests.pages_helpers import demo_account
from tests.test_browser_pages import PASSWORD, SHOTS, _shot, _sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = {"desktop": (1440, 900), "narrow": (390, 844)}


@dataclass(frozen=True)
class Stop:
    slug: str
    path: str
    pane: bool = False  # a pane URL: as a page it is the pane; with `over` it also opens over that page
    over: str = ""
    primaries: int | None = None  # exactly this many filled buttons; None: at most one


def _visible_primaries(page: Page, scope: str) -> int:
    return page.locator(f"{scope} .btn--primary:visible").count()


def _rule_breaks(page: Page, name: str, scope: str, *, exactly: int | None) -> list[str]:
    """What breaks the rules on the page as shown (every break, so one run lists them all)."""
    breaks = []
    count = _visible_primaries(page, scope)
    if exactly is None and count > 1:
        breaks.append(f"{name}: {count} primary buttons")
    if exactly is not None and count != exactly:
        breaks.append(f"{name}: {count} primary buttons, expected {exactly}")
    # Settle balance in a table or a message bar is a link, as in the admin center.
    offenders = page.evaluate(
        """() => Array.from(document.querySelectorAll('table, .msgbar'))
            .flatMap(el => Array.from(el.querySelectorAll('button, .btn--primary')))
            .filter(el => /Settle balance|Achterstand betalen|Saldo vereffenen/i.test(el.textContent))
            .map(el => el.outerHTML.slice(0, 120))"""
    )
    if offenders:
        breaks.append(f"{name}: Settle balance as a button: {offenders}")
    settle = page.locator(".settle-action")
    for i in range(settle.count()):
        if settle.nth(i).evaluate("el => el.tagName") != "A":
            breaks.append(f"{name}: .settle-action is not a link")
    # No filled buttons inside table rows: rows get a "…" menu or a details link.
    in_rows = page.locator("tbody .btn--primary:visible").count()
    if in_rows:
        breaks.append(f"{name}: {in_rows} primary buttons inside table rows")
    # Nothing pushes the page sideways (tables scroll inside their own wrapper).
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    if overflow > 0:
        breaks.append(f"{name}: the page is {overflow}px wider than the viewport")
    return breaks


def _open_pane(page: Page, url: str) -> None:
    page.evaluate("url => htmx.ajax('GET', url, {target: '#side-pane', swap: 'innerHTML'})", url)
    expect(page.locator("#side-pane .pane")).to_be_visible()
    expect(page.locator("#side-pane-host")).not_to_have_class(re.compile("is-entering"))


def _customer_stops(account: BillingAccount) -> list[Stop]:
    a = f"/a/{account.pk}"
    subs = Subscription.objects.filter(account=account).order_by("pk")
    past_due_sub = subs.filter(status__in=["past_due", "warned", "disabled"]).first() or subs.first()
    assert past_due_sub is not None
    invoices = Invoice.objects.filter(subscription__account=account).order_by("number")
    payable = invoices.filter(status__in=["open", "past_due"], amount_due_minor__gt=0).first()
    first_invoice = invoices.first()
    assert first_invoice is not None
    methods = PaymentMethod.objects.filter(account=account, removed_at__isnull=True).order_by("pk")
    declined = methods.filter(status="declined").first()
    card = methods.exclude(status="declined").first() or methods.first()
    assert card is not None
    attempt = PaymentAttempt.objects.filter(account=account).order_by("-pk").first()
    other_member = Membership.objects.filter(account=account).exclude(role=Role.OWNER).order_by("pk").first()
    stops = [
        Stop("home", f"{a}/"),
        Stop("products", f"{a}/products/"),
        Stop("subscription", f"{a}/products/{past_due_sub.pk}/"),
        Stop("timeline", f"{a}/products/{past_due_sub.pk}/timeline/"),
        Stop(
            "pane-subscription-replace",
            f"{a}/products/{past_due_sub.pk}/replace-payment-method/",
            pane=True,
            over=f"{a}/products/",
        ),
        Stop("invoices", f"{a}/billing/invoices/"),
        Stop("invoice", f"{a}/billing/invoices/{first_invoice.number}/"),
        Stop("payment-methods", f"{a}/billing/payment-methods/"),
        Stop(
            "pane-card-add",
            f"{a}/billing/payment-methods/add/",
            pane=True,
            over=f"{a}/billing/payment-methods/",
        ),
        Stop(
            "pane-card-edit",
            f"{a}/billing/payment-methods/{card.pk}/edit/",
            pane=True,
            over=f"{a}/billing/payment-methods/",
        ),
        Stop(
            "pane-card-delete",
            f"{a}/billing/payment-methods/{card.pk}/delete/",
            pane=True,
            over=f"{a}/billing/payment-methods/",
        ),
        Stop("profile", f"{a}/billing/profile/"),
        Stop("pane-profile-edit", f"{a}/billing/profile/edit/", pane=True, over=f"{a}/billing/profile/"),
        Stop("billing-accounts", f"{a}/billing/accounts/"),
        Stop("roles", f"{a}/billing/accounts/roles/"),
        Stop(
            "pane-invite",
            f"{a}/billing/accounts/roles/invite/",
            pane=True,
            over=f"{a}/billing/accounts/roles/",
        ),
        Stop("notifications", f"{a}/billing/notifications/"),
        Stop(
            "pane-notifications-edit",
            f"{a}/billing/notifications/edit/",
            pane=True,
            over=f"{a}/billing/notifications/",
        ),
        Stop(
            "pane-recipients",
            f"{a}/billing/notifications/recipients/",
            pane=True,
            over=f"{a}/billing/notifications/",
        ),
        Stop("sent", f"{a}/billing/notifications/sent/"),
        Stop("support-requests", f"{a}/support/requests/"),
        Stop("pane-support-new", f"{a}/support/requests/new/", pane=True, over=f"{a}/support/requests/"),
    ]
    if payable is not None:
        stops.append(
            Stop(
                "pane-pay-now",
                f"{a}/billing/invoices/{payable.number}/pay/",
                pane=True,
                over=f"{a}/billing/invoices/",
            )
        )
    if declined is not None:
        stops += [
            Stop("pane-settle", f"{a}/billing/settle/{declined.pk}/", pane=True, over=f"{a}/"),
            Stop(
                "pane-card-replace",
                f"{a}/billing/payment-methods/{declined.pk}/replace/",
                pane=True,
                over=f"{a}/billing/payment-methods/",
            ),
        ]
    if attempt is not None:
        stops.append(Stop("payment", f"{a}/billing/payments/{attempt.pk}/"))
    if other_member is not None:
        stops += [
            Stop(
                "pane-role",
                f"{a}/billing/accounts/roles/{other_member.pk}/",
                pane=True,
                over=f"{a}/billing/accounts/roles/",
            ),
            Stop(
                "pane-member-remove",
                f"{a}/billing/accounts/roles/{other_member.pk}/remove/",
                pane=True,
                over=f"{a}/billing/accounts/roles/",
            ),
        ]
    stopped = subs.filter(status__in=["disabled", "cancelled"]).first()
    if stopped is not None:
        stops.append(
            Stop(
                "pane-reactivate",
                f"{a}/products/{stopped.pk}/reactivate/",
                pane=True,
                over=f"{a}/products/{stopped.pk}/",
            )
        )
    return stops


def _visit(page: Page, base: str, stop: Stop, name: str) -> list[str]:
    response = page.goto(base + stop.path)
    assert response is not None
    assert response.status == 200, f"{name}: {response.status}"
    expect(page.get_by_role("heading", level=1).first).to_be_visible()
    _shot(page, name)
    return _rule_breaks(page, name, "#main", exactly=1 if stop.pane else stop.primaries)


@pytest.mark.parametrize(
    ("email", "account_name", "lang"),
    [("admin@contoso.example", "Contoso Ltd", "en"), ("admin@fabrikam.example", "Fabrikam BV", "nl")],
)
def test_every_customer_page_and_pane(live_server, demo_page: Page, email, account_name, lang):
    from support_requests.services import support_request_open

    page, base = demo_page, live_server.url
    account = demo_account(account_name)
    admin = Membership.objects.get(account=account, user__email=email)
    opened = support_request_open(
        membership=admin,
        about="account",
        subject="Tour" if lang == "en" else "Rondleiding",
        body="A question about the account.",
        form_key=f"tour-{lang}",
    )
    stops = [
        *_customer_stops(account),
        Stop("support-request", f"/a/{account.pk}/support/requests/{opened.pk}/"),
    ]
    _sign_in(page, base, email)
    expect(page.locator("html")).to_have_attribute("lang", lang)
    breaks: list[str] = []
    for width, (w, h) in WIDTHS.items():
        page.set_viewport_size({"width": w, "height": h})
        for stop in stops:
            breaks += _visit(page, base, stop, f"tour-{lang}-{width}-{stop.slug}")
            if stop.over:
                name = f"tour-{lang}-{width}-{stop.slug}-open"
                page.goto(base + stop.over)
                _open_pane(page, stop.path)
                # The viewport as people see it: the pane is fixed over the page, a full-page shot would
                # show the page running on below it.
                SHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SHOTS / f"{name}.png"))
                breaks += _rule_breaks(page, name, "#side-pane", exactly=1)
                page.keyboard.press("Escape")
                expect(page.locator("#side-pane-host")).to_be_hidden()
    assert not breaks, "\n".join(breaks)
    assert page.errors == []


@pytest.mark.parametrize("lang", ["en", "nl"])
def test_every_support_console_page(live_server, demo_page: Page, lang):
    page, base = demo_page, live_server.url
    contoso = demo_account("Contoso Ltd")
    invoice = Invoice.objects.filter(subscription__account=contoso, status="past_due").order_by("pk").first()
    northwind = demo_account("Northwind Traders")  # pays by bank transfer
    attempt = PaymentAttempt.objects.filter(status="succeeded").order_by("pk").first()
    sub = Subscription.objects.filter(account=contoso, status="past_due").order_by("pk").first()
    s = f"/support/accounts/{contoso.pk}"
    stops = [
        Stop("search", "/support/?q=contoso"),
        Stop("dashboard", "/support/dashboard/"),
        Stop("account", f"{s}/"),
        Stop("subscriptions", f"{s}/subscriptions/"),
        Stop("bank-transfer", f"/support/accounts/{northwind.pk}/bank-transfer/", primaries=1),
        Stop("queue", "/support/requests/"),
    ]
    if invoice is not None:
        stops.append(Stop("retry", f"{s}/invoices/{invoice.pk}/retry/", primaries=1))
    if sub is not None:
        stops.append(Stop("grace", f"{s}/subscriptions/{sub.pk}/grace/", primaries=1))
    if attempt is not None:
        stops += [
            Stop(
                "refund", f"/support/accounts/{attempt.account_id}/payments/{attempt.pk}/refund/", primaries=1
            ),
            Stop(
                "simulated-bank",
                f"/support/accounts/{attempt.account_id}/payments/{attempt.pk}/simulated-bank/",
            ),
        ]
    page.set_extra_http_headers({"Accept-Language": lang})
    page.goto(f"{base}/sign-in/?next=/support/")
    page.locator("input[name=username], input[type=email]").first.fill("support@billing.example")
    page.locator("input[type=password]").fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/support/"))
    breaks: list[str] = []
    for width, (w, h) in WIDTHS.items():
        page.set_viewport_size({"width": w, "height": h})
        for stop in stops:
            response = page.goto(base + stop.path)
            assert response is not None
            if response.status != 200:  # an action that does not apply to the demo data today (a 400)
                page.errors.clear()  # the browser logs that status as a console error
                continue
            breaks += [f"{stop.slug}: {e}" for e in page.errors]
            page.errors.clear()
            name = f"tour-support-{lang}-{width}-{stop.slug}"
            _shot(page, name)
            breaks += _rule_breaks(page, name, "#main", exactly=stop.primaries)
    assert not breaks, "\n".join(breaks)
