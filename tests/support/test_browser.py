"""The issue's walk-through in Chromium: support finds Northwind and records its bank transfer."""

from __future__ import annotations

import os
import re

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from accounts.models import User
from audit.models import AuditEvent
from subscriptions.models import Subscription

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="needs Chromium at /usr/bin/chromium"),
]


def sign_in(context, live_server, email: str) -> None:
    """A real session for the user, handed to the browser as its cookie."""
    client = Client()
    client.force_login(User.objects.get(email=email))
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])


def test_support_finds_northwind_and_records_its_bank_transfer(live_server, page):
    from playwright.sync_api import expect

    call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
    sign_in(page.context, live_server, "support@billing.example")

    page.goto(f"{live_server.url}/support/")
    page.get_by_label(re.compile("^Name, domain")).fill("northw")
    page.get_by_role("button", name="Search").click()
    results = page.locator("#results")
    expect(results.get_by_role("link", name="Northwind Traders")).to_be_visible()
    expect(results).to_contain_text("$1,250.00")
    expect(results).to_contain_text("Disabled")

    page.get_by_label(re.compile("^Name, domain")).fill("INV-2026-300001")
    page.get_by_role("button", name="Search").click()
    page.locator("#results").get_by_role("link", name="Northwind Traders").click()

    expect(page.get_by_role("heading", name="Northwind Traders", level=1)).to_be_visible()
    expect(page.locator("body")).to_contain_text("ap@northwind.example")
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
    page.get_by_role("button", name="Confirm").click()

    expect(page.get_by_role("status").first).to_contain_text("Bank transfer of $1,250.00 recorded")
    azure_row = page.locator("#subscriptions tr", has_text="Azure subscription")
    expect(azure_row).to_contain_text("Active")

    azure = Subscription.objects.get(account__domain="northwind.example", product__code="azure-plan")
    assert azure.status == Subscription.Status.ACTIVE
    assert AuditEvent.objects.filter(
        action="support.bank_transfer_recorded", actor__email="support@billing.example"
    ).exists()
    assert AuditEvent.objects.filter(action="support.account_viewed", account=azure.account).count() >= 2
