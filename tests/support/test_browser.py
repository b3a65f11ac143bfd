"""The issue's walk-through in Chromium: support finds Northwind and records its bank transfer."""

from __future__ import annotations

import os
import re

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEvent
from subscriptions.models import Subscription

PASSWORD = "demo-pass-2026"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="needs Chromium at /usr/bin/chromium"),
]


def sign_in(page, live_server, email: str) -> None:
    """Through the real sign-in page, coming from a support URL, as an operator would."""
    page.goto(f"{live_server.url}/support/")  # anonymous: sent to sign in, with ?next=
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/support/$"))


def assert_accessible(page, name: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    violations = [
        f"{v['id']} ({v['impact']}): {v['help']} {[n['target'] for n in v['nodes']]}"
        for v in Axe().run(page).response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not violations, f"{name}: {violations}"


def test_support_finds_northwind_and_records_its_bank_transfer(live_server, page):
    from playwright.sync_api import expect

    call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
    errors: list[str] = []  # a CSP violation or a missing asset shows up here
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    sign_in(page, live_server, "support@billing.example")
    page.get_by_label(re.compile("^Name, domain")).fill("northw")
    page.get_by_role("button", name="Search").click()
    results = page.locator("#results")
    expect(results.get_by_role("link", name="Northwind Traders")).to_be_visible()
    expect(results).to_contain_text("$1,250.00")
    expect(results).to_contain_text("Disabled")
    assert_accessible(page, "search")

    page.get_by_label(re.compile("^Name, domain")).fill("INV-2026-300001")
    page.get_by_role("button", name="Search").click()
    page.locator("#results").get_by_role("link", name="Northwind Traders").click()

    expect(page.get_by_role("heading", name="Northwind Traders", level=1)).to_be_visible()
    expect(page.locator("body")).to_contain_text("ap@northwind.example")
    assert_accessible(page, "account")
    page.get_by_role("link", name="Record a bank transfer").click()

    page.get_by_label("Amount received").fill("1250.00")
    page.get_by_label("Received on").fill(timezone.localdate().isoformat())
    page.get_by_label("Bank reference").fill("INV-2026-300001")
    page.get_by_label(re.compile("^Reason")).fill("Wire received, bank statement of today")
    page.get_by_role("button", name="Review transfer").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text(
        "Record $1,250.00 received from Northwind Traders?"
    )
    expect(page.locator("body")).to_contain_text("Pays INV-2026-300001")
    assert_accessible(page, "confirm")
    page.get_by_role("button", name="Confirm").click()

    expect(page.get_by_role("status").first).to_contain_text("Bank transfer of $1,250.00 recorded")
    azure_row = page.locator("#subscriptions tr", has_text="Azure subscription")
    expect(azure_row).to_contain_text("Active")

    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Recovery dashboard", level=1)).to_be_visible()
    expect(page.locator("svg.chart").first).to_be_visible()
    assert_accessible(page, "dashboard")
    assert not errors, errors

    azure = Subscription.objects.get(account__domain="northwind.example", product__code="azure-plan")
    assert azure.status == Subscription.Status.ACTIVE
    assert AuditEvent.objects.filter(
        action="support.bank_transfer_recorded", actor__email="support@billing.example"
    ).exists()
    assert AuditEvent.objects.filter(action="support.account_viewed", account=azure.account).count() >= 2
