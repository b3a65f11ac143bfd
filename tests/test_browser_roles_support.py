"""The roles and support walk in Chromium: the owner invites a person, the invitation is accepted, a role
changes, ownership is handed over; a customer asks support, support replies, the customer reads it.

Screenshots land in test-results/screenshots/<name>.png; axe-core checks every new page and pane.
"""

from __future__ import annotations

import re

import pytest
from django.core import mail
from playwright.sync_api import Browser, Page, expect

from accounts.models import Membership, Role
from tests.pages_helpers import demo_account, seed_demo
from tests.test_browser_pages import PASSWORD, _assert_accessible, _shot, _sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _watch_console(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return errors


def _new_page(browser: Browser) -> Page:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    return context.new_page()


def test_owner_invites_assigns_and_hands_over_then_support_answers(live_server, browser: Browser):
    seed_demo()
    base = live_server.url
    contoso = demo_account("Contoso Ltd")
    owner = _new_page(browser)
    errors = _watch_console(owner)

    # The owner finds Billing accounts in the left navigation.
    _sign_in(owner, base, "admin@contoso.example")
    owner.get_by_role("navigation", name="Main navigation").get_by_role(
        "link", name="Billing accounts"
    ).click()
    table = owner.locator("#billing-accounts")
    expect(table).to_contain_text("Contoso Ltd")
    expect(table).to_contain_text("Billing account owner")
    expect(table).to_contain_text("Ireland")
    _shot(owner, "billing-accounts")
    _assert_accessible(owner, "billing-accounts")

    owner.get_by_role("link", name="Assign roles").click()
    expect(owner.get_by_role("heading", level=1)).to_have_text("Billing account roles")
    _shot(owner, "roles")
    _assert_accessible(owner, "roles")

    # Invite: a bad address stays in the pane with a message; then a real one.
    opener = owner.get_by_role("link", name="Invite a person")
    opener.click()
    pane = owner.get_by_role("dialog", name="Invite a person")
    expect(pane).to_be_visible()
    expect(owner.get_by_label("E-mail address")).to_be_focused()
    owner.get_by_label("E-mail address").fill("nina@contoso")
    owner.get_by_role("button", name="Send invitation").click()
    expect(pane.locator(".field__error")).to_contain_text("Enter a valid e-mail address")
    expect(owner.get_by_label("E-mail address")).to_have_value("nina@contoso")
    owner.get_by_label("E-mail address").fill("nina@contoso.example")
    pane.get_by_text("Invoice manager", exact=True).click()
    _shot(owner, "pane-invite")
    _assert_accessible(owner, "pane-invite")
    owner.get_by_role("button", name="Send invitation").click()
    expect(owner.locator("#side-pane-host")).to_be_hidden()
    expect(owner.locator("#invitations")).to_contain_text("nina@contoso.example")
    expect(owner.locator("#messages")).to_contain_text("An invitation was sent to nina@contoso.example")
    _shot(owner, "roles-invited")

    # Nina opens the link from her mail, sets a password and lands in Contoso as invoice manager.
    invite = next(m for m in mail.outbox if m.to == ["nina@contoso.example"])
    link = re.search(r"https?://[^/\s]+(/invitations/\S+/)", invite.body).group(1)
    nina = _new_page(browser)
    nina_errors = _watch_console(nina)
    nina.goto(base + link)
    expect(nina.get_by_role("heading", level=1)).to_have_text("Join Contoso Ltd")
    _shot(nina, "invitation-accept")
    _assert_accessible(nina, "invitation-accept")
    nina.get_by_label("Your name").fill("Nina Jansen")
    nina.locator("#id_password").fill("nina-pass-2026!")
    nina.get_by_label("Password again").fill("nina-pass-2026!")
    nina.get_by_role("button", name="Set password and join").click()
    nina.wait_for_url(f"{base}/a/{contoso.pk}/")
    expect(nina.locator(".page__subtitle")).to_contain_text("Invoice manager")
    nav = nina.get_by_role("navigation", name="Main navigation")
    expect(nav.get_by_role("link", name="Your products")).to_have_count(0)
    expect(nav.get_by_role("link", name="Bills & payments")).to_be_visible()
    _shot(nina, "home-invoice-manager")
    _assert_accessible(nina, "home-invoice-manager")

    # The owner makes Nina a billing reader.
    owner.reload()
    nina_row = owner.locator("tr", has_text="nina@contoso.example")
    nina_row.locator(".row-menu > summary").click()  # the row's "…" menu
    nina_row.get_by_role("link", name="Assign role").click()
    pane = owner.get_by_role("dialog", name="Assign role")
    expect(pane).to_be_visible()
    pane.get_by_text("Billing reader", exact=True).click()
    _shot(owner, "pane-assign-role")
    _assert_accessible(owner, "pane-assign-role")
    owner.get_by_role("button", name="Save").click()
    expect(owner.locator("#side-pane-host")).to_be_hidden()
    expect(owner.locator("#member-list tr", has_text="nina@contoso.example")).to_contain_text(
        "Billing reader"
    )

    # Ownership goes to finance@contoso.example; the former owner becomes a billing admin.
    finance_row = owner.locator("tr", has_text="finance@contoso.example")
    finance_row.locator(".row-menu > summary").click()
    finance_row.get_by_role("link", name="Assign role").click()
    pane = owner.get_by_role("dialog", name="Assign role")
    pane.get_by_text("Billing account owner", exact=True).click()
    owner.get_by_role("button", name="Save").click()
    expect(owner.locator("#side-pane-host")).to_be_hidden()
    expect(owner.locator("#messages")).to_contain_text("finance@contoso.example is now Billing account owner")
    expect(owner.locator("#member-list")).not_to_contain_text("Assign role")
    _shot(owner, "roles-after-handover")
    assert Membership.objects.get(account=contoso, role=Role.OWNER).user.email == "finance@contoso.example"
    assert Membership.objects.get(account=contoso, user__email="admin@contoso.example").role == Role.ADMIN

    # The (now) billing admin asks support about an invoice, from the invoice.
    owner.goto(f"{base}/a/{contoso.pk}/billing/invoices/INV-2026-100001/")
    owner.get_by_role("link", name="Create a support request").click()
    pane = owner.get_by_role("dialog", name="Create a support request")
    expect(pane).to_contain_text("INV-2026-100001")
    expect(owner.get_by_label("Subject")).to_have_value("Question about invoice INV-2026-100001")
    owner.get_by_label("Describe the problem or question").fill(
        "We paid this invoice by card yesterday, but Microsoft 365 Business Standard is still past due."
    )
    _shot(owner, "pane-support-request")
    _assert_accessible(owner, "pane-support-request")
    owner.get_by_role("button", name="Send request").click()
    owner.wait_for_url(re.compile(r"/support/requests/\d+/$"))
    expect(owner.locator("#messages")).to_contain_text("Your support request SR-")
    request_url = owner.url

    # Support finds it in the queue, oldest waiting first, and replies.
    agent = _new_page(browser)
    agent_errors = _watch_console(agent)
    agent.goto(f"{base}/sign-in/?next=/support/requests/")
    agent.get_by_label("E-mail address").fill("support@billing.example")
    agent.get_by_label("Password").fill(PASSWORD)
    agent.get_by_role("button", name="Sign in").click()
    agent.wait_for_url(f"{base}/support/requests/")
    queue = agent.locator("#support-queue")
    expect(queue).to_contain_text("Question about invoice INV-2026-100001")
    expect(queue.get_by_role("link", name="Contoso Ltd")).to_be_visible()
    _shot(agent, "support-queue")
    _assert_accessible(agent, "support-queue")
    queue.get_by_role("link", name=re.compile(r"^SR-")).first.click()
    agent.get_by_label("Reply to the customer").fill(
        "Thank you. The card payment reached us this morning; the invoice now shows as paid."
    )
    agent.get_by_role("button", name="Send").click()
    expect(agent.locator("#messages")).to_contain_text("Reply sent")
    _shot(agent, "support-request-staff")
    _assert_accessible(agent, "support-request-staff")

    # The customer sees the reply and its status, and got a mail.
    owner.goto(request_url)
    expect(owner.locator(".sr-msg--support")).to_contain_text("the invoice now shows as paid")
    expect(owner.locator(".page__subtitle")).to_contain_text("Support replied")
    _shot(owner, "support-request-customer")
    _assert_accessible(owner, "support-request-customer")
    owner.get_by_role("link", name="Support requests").first.click()
    expect(owner.locator("#support-requests")).to_contain_text("Support replied")
    _shot(owner, "support-requests")
    _assert_accessible(owner, "support-requests")
    assert any(m.to == ["admin@contoso.example"] and "Support replied" in m.subject for m in mail.outbox)
    assert errors == []
    assert nina_errors == []
    assert agent_errors == []


def test_roles_and_support_panes_work_without_javascript(live_server, browser: Browser):
    seed_demo()
    contoso = demo_account("Contoso Ltd")
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    _sign_in(page, live_server.url, "admin@contoso.example")
    page.goto(f"{live_server.url}/a/{contoso.pk}/billing/accounts/roles/invite/")
    page.get_by_label("E-mail address").fill("no-js@contoso.example")
    page.get_by_text("Billing reader", exact=True).click()
    page.get_by_role("button", name="Send invitation").click()
    expect(page.locator("#invitations")).to_contain_text("no-js@contoso.example")
    page.goto(f"{live_server.url}/a/{contoso.pk}/support/requests/new/")
    page.get_by_label("Subject").fill("Where is my receipt?")
    page.get_by_label("Describe the problem or question").fill("No receipt arrived for last week's payment.")
    page.get_by_role("button", name="Send request").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Where is my receipt?")
    _shot(page, "support-request-no-js")
    context.close()
