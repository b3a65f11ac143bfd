"""Every customer page, pane and mail of a Dutch account reads as Dutch: no English UI words, no raw codes,
no English or American date formats.

Pages come from the resolver (every GET pattern under /a/<account_id>/), filled with the ids of Fabrikam BV
(language "nl") from the demo, so a new page is checked the day it is added. Mails: every kind in
notifications/templates/notifications/email/, sent to Fabrikam through notice_send.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from accounts.models import BillingAccount, User
from billing_portal.dates import format_date
from billing_portal.money import format_money
from notifications.services import notice_send
from payments.models import PaymentAttempt, PaymentMethod
from subscriptions.models import Invoice
from tests.pages_helpers import seed_demo

pytestmark = pytest.mark.django_db

# English words of our own UI that have a Dutch translation; product names, brands and e-mail addresses
# are not in this list on purpose. Whole words, case-sensitive, as they would appear in text.
ENGLISH = [
    "Settle balance",
    "Pay now",
    "Payment methods",
    "Payment method",
    "Your products",
    "Invoices",
    "Invoice",
    "Subscription",
    "Subscriptions",
    "Amount due",
    "Past due",
    "past due",
    "Due",
    "Expires",
    "Expired",
    "Declined",
    "declined",
    "ending",
    "Cancel",
    "Close",
    "Total",
    "Nothing",
    "Billing",
    "Home",
    "Payment timeline",
    "Sent notifications",
    "Add a new card",
    "Licenses",
    "Licences",
    "Paid on",
    "Net",
    "Due on receipt",
    "Hello",
    "We will",
    "Choose",
    "Select",
    "Next",
    "Previous",
    "Try again",
]
ENGLISH_RE = re.compile(r"(?<![\w@.-])(" + "|".join(re.escape(w) for w in ENGLISH) + r")(?![\w@-])")
# A decline code or event name shown as text: lower_snake (card_declined) or dotted (support.account_viewed).
RAW_CODE_RE = re.compile(r"(?<![\w@./:-])([a-z]+_[a-z_]+|[a-z]+\.[a-z]+_[a-z_]+)(?![\w@/-])")
# English/American dates: "Dec. 26, 2026", "26 Dec 2026", "Mar 5", "12/01/2026".
ENGLISH_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
DATE_RE = re.compile(
    rf"\b(?:{ENGLISH_MONTHS})\.? \d{{1,2}}\b|\b\d{{1,2}} (?:{ENGLISH_MONTHS}|Mrt|Mei|Okt)\b|\b\d{{1,2}}/\d{{1,2}}/\d{{4}}\b"
)


class _Text(HTMLParser):
    """Text a person reads: element text and the attributes screen readers speak, not scripts or styles."""

    SKIP = {"script", "style", "code", "pre"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skip += 1
        for name, value in attrs:
            if name in ("aria-label", "title", "placeholder", "alt") and value:
                self.parts.append(value)

    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.parts.append(data.strip())


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return "\n".join(parser.parts)


def problems(text: str, allowed: frozenset[str] = frozenset()) -> list[str]:
    found = [f"English: {m}" for m in ENGLISH_RE.findall(text) if m not in allowed]
    found += [f"raw code: {m}" for m in RAW_CODE_RE.findall(text) if m not in allowed]
    found += [f"date: {m}" for m in DATE_RE.findall(text)]
    return found


def _fabrikam_ids(account: BillingAccount) -> dict[str, str]:
    method = PaymentMethod.objects.filter(account=account).order_by("pk").first()
    attempt = PaymentAttempt.objects.filter(account=account).order_by("pk").first()
    invoice = Invoice.objects.filter(account=account).order_by("pk").first()
    assert method is not None
    assert attempt is not None
    assert invoice is not None
    assert invoice.subscription_id
    return {
        "account_id": str(account.pk),
        "method_id": str(method.pk),
        "failed_method_id": str(method.pk),
        "attempt_id": str(attempt.pk),
        "subscription_id": str(invoice.subscription_id),
        "number": invoice.number,
    }


class _Ids(dict):
    def __missing__(self, key: str) -> str:
        return "0"


def _account_get_routes() -> list[str]:
    found: list[str] = []

    def walk(patterns, prefix: str) -> None:
        for p in patterns:
            route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(p.pattern))
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + route)
            elif isinstance(p, URLPattern) and (prefix + route).startswith("a/{account_id}/"):
                found.append(prefix + route)

    walk(get_resolver().url_patterns, "")
    return found


def test_every_page_and_pane_of_a_dutch_account_is_dutch(client):
    seed_demo()
    fabrikam = BillingAccount.objects.get(domain="fabrikam.example")
    client.force_login(User.objects.get(email="admin@fabrikam.example"))
    ids = _fabrikam_ids(fabrikam)
    checked, report = 0, {}
    for route in _account_get_routes():
        # Ids this walk does not know (a member, an invitation, a request) get 0: a 404, skipped below.
        path = "/" + route.format_map(_Ids(ids))
        for headers in ({}, {"HX-Request": "true"}):
            response = client.get(path, headers=headers)
            if response.status_code != 200 or "text/html" not in response.get("Content-Type", ""):
                continue
            checked += 1
            text = visible_text(response.content.decode())
            # The seller's own name ("Billing Example B.V.") is a name on invoices, not an English word.
            found = problems(text, allowed=frozenset({"Fabrikam", *settings.BILLING_SELLER["name"].split()}))
            if found:
                report[path + (" (htmx)" if headers else "")] = sorted(set(found))
    assert checked >= 12, checked
    assert report == {}, "\n".join(f"{k}: {v}" for k, v in report.items())


MAIL_DIR = Path(settings.BASE_DIR) / "notifications" / "templates" / "notifications" / "email"


def _mail_context(account: BillingAccount) -> dict[str, object]:
    method = PaymentMethod.objects.filter(account=account).first()
    assert method is not None
    from django.utils import translation

    with translation.override("nl"):
        label = method.label
    today = timezone.localdate()
    return {
        "product": "Microsoft 365 Business Basic",
        "invoice": "INV-2026-200001",
        "invoices": "INV-2026-200001",
        "amount": format_money(7200, "EUR", "nl"),
        "method": label,
        "reason": "",
        "retry_on": format_date(today, "nl"),
        "disable_on": format_date(today, "nl"),
        "cancel_on": format_date(today, "nl"),
        "delete_on": format_date(today, "nl"),
        "paid_on": format_date(today, "nl"),
        "reference": "PAY-00000042",
        "days": 7,
        "settle_url": "https://billing.example/a/1/billing/settle/1/",
        "items": [
            {
                "product": "Exchange Online (Plan 1)",
                "invoice": "INV-1",
                "amount": format_money(100, "EUR", "nl"),
            },
            {"product": "Power BI Pro", "invoice": "INV-2", "amount": format_money(200, "EUR", "nl")},
        ],
    }


@pytest.mark.parametrize(
    "kind", sorted(p.name.removesuffix(".txt") for p in MAIL_DIR.glob("*.txt") if "_subject" not in p.name)
)
def test_every_mail_to_a_dutch_account_is_dutch(kind, django_capture_on_commit_callbacks, mailoutbox):
    seed_demo()
    fabrikam = BillingAccount.objects.get(domain="fabrikam.example")
    with django_capture_on_commit_callbacks(execute=True):
        notice_send(account=fabrikam, kind=kind, dedupe_key=f"dutch-{kind}", context=_mail_context(fabrikam))
    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    texts = [message.subject, message.body] + [visible_text(str(c)) for c, _ in message.alternatives]
    for text in texts:
        assert problems(text) == [], (kind, text)
