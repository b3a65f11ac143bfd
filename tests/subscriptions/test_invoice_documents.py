"""Invoice documents: Download PDF (English and Dutch, cached by version) and the CSV export of the Invoices tab."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import tracemalloc
from pathlib import Path
from typing import cast
from unittest import mock

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from accounts.models import BillingAccount, Membership, Role
from billing import documents
from payments.models import PaymentAllocation, PaymentAttempt
from subscriptions.models import Invoice, InvoiceLine
from tests.factories import (
    BillingAccountFactory,
    InvoiceFactory,
    MembershipFactory,
    PaymentMethodFactory,
    ProductFactory,
    SubscriptionFactory,
)
from tests.pages_helpers import account_with_subscriptions, outsider

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _pdf_cache(settings, tmp_path):
    settings.INVOICE_PDF_CACHE_DIR = tmp_path / "invoice-pdfs"


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def _account(**kwargs) -> tuple[BillingAccount, Membership]:
    fields = {
        "name": "Contoso Ltd",
        "address_line1": "Keizersgracht 1",
        "postal_code": "1015 CJ",
        "city": "Amsterdam",
        "country": "NL",
        "tax_id": "NL001234567B01",
        "po_number": "PO-4711",
    }
    account = cast(BillingAccount, BillingAccountFactory(**{**fields, **kwargs}))
    return account, cast(Membership, MembershipFactory(account=account, role=Role.ADMIN))


def _invoice(account: BillingAccount, *, due_days: int = 0, **kwargs) -> Invoice:
    product = ProductFactory(name="Microsoft 365 Business Standard")
    sub = SubscriptionFactory(account=account, product=product, quantity=25, unit_price_minor=1170)
    today = timezone.localdate()
    return cast(
        Invoice,
        InvoiceFactory(
            subscription=sub,
            number="INV-2026-100001",
            issued_on=today,
            due_on=today + dt.timedelta(days=due_days),
            period_start=today,
            period_end=today + dt.timedelta(days=29),
            **kwargs,
        ),
    )


def _pay(invoice: Invoice, amount_minor: int) -> PaymentAttempt:
    method = PaymentMethodFactory(account=invoice.account, last4="4444", brand="mastercard")
    attempt = PaymentAttempt.objects.create(
        account=invoice.account,
        payment_method=method,
        amount_minor=amount_minor,
        currency=invoice.currency,
        status=PaymentAttempt.Status.SUCCEEDED,
        source=PaymentAttempt.Source.PAY_NOW,
        idempotency_key=f"test:{invoice.pk}:{amount_minor}",
        completed_at=timezone.now(),
    )
    # Applied, as payments.ledger.payment_apply records money that went onto the invoice.
    PaymentAllocation.objects.create(
        attempt=attempt, invoice=invoice, amount_minor=amount_minor, applied_minor=amount_minor
    )
    return attempt


def test_pdf_has_seller_bill_to_po_lines_totals_terms_and_payments_in_english(client):
    account, member = _account()
    invoice = _invoice(account)
    attempt = _pay(invoice, 10000)
    Invoice.objects.filter(pk=invoice.pk).update(amount_due_minor=invoice.total_minor - 10000)
    client.force_login(member.user)

    response = client.get(reverse("subscriptions:invoice_pdf", args=[account.pk, invoice.number]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert 'filename="INV-2026-100001.pdf"' in response["Content-Disposition"]
    assert response.content.startswith(b"%PDF-")
    text = _text(response.content)
    for expected in (
        "Billing Example B.V.",  # seller
        "VAT ID NL859123456B01",
        "Contoso Ltd",  # bill to, with the country's name, not its code
        "Netherlands",
        "Tax ID NL001234567B01",
        "PO number",
        "PO-4711",
        "INV-2026-100001",
        "Microsoft 365 Business Standard",
        "€11.70",  # unit price
        "€292.50",  # line and total
        "Subtotal",
        "Tax",
        "Amount due",
        "€192.50",
        "Transaction type",
        "Renew",
        "Due on receipt",  # due on its issue date: not "Net 30 days"
        "Payments and credits",
        attempt.reference,
        "Mastercard ending 4444",
        "−€100.00",
    ):
        assert expected in text, expected
    assert "Net 30 days" not in text
    assert "How to pay" not in text  # a card account has no remittance block


def test_pdf_is_in_the_accounts_language_with_dutch_money_dates_and_country(client):
    account, member = _account(language="nl")
    invoice = _invoice(account, due_days=30)
    client.force_login(member.user)

    response = client.get(reverse("subscriptions:invoice_pdf", args=[account.pk, invoice.number]))

    text = _text(response.content)
    assert "Factuur" in text
    assert "Factuuradres" in text
    assert "Nederland" in text
    assert "€ 292,50" in text
    assert "Netto 30 dagen" in text
    month = ["jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt", "nov", "dec"][
        invoice.issued_on.month - 1
    ]
    assert f"{invoice.issued_on.day} {month} {invoice.issued_on.year}" in text
    assert "Amount due" not in text


# A pay-by-invoice account with its remittance details: the invoice prints them until it is paid.
BANK_TRANSFER = {
    "payment_mode": BillingAccount.PaymentMode.BANK_TRANSFER,
    "remittance_bank_name": "Contoso Bank",
    "remittance_account_holder": "Billing Example B.V.",
    "remittance_iban": "NL91ABNA0417164300",
    "remittance_bic": "ABNANL2A",
}


def test_bank_transfer_invoice_has_remittance_details_until_it_is_paid(client):
    account, member = _account(**BANK_TRANSFER)
    invoice = _invoice(account, due_days=30, status=Invoice.Status.PAST_DUE)
    client.force_login(member.user)
    url = reverse("subscriptions:invoice_pdf", args=[account.pk, invoice.number])

    text = _text(client.get(url).content)
    assert "How to pay" in text
    assert "NL91ABNA0417164300" in text
    assert "Net 30 days" in text

    Invoice.objects.filter(pk=invoice.pk).update(
        status=Invoice.Status.PAID, amount_due_minor=0, paid_at=timezone.now()
    )
    assert "NL91ABNA0417164300" not in _text(client.get(url).content)


def test_a_cache_hit_does_not_render_again_and_any_change_does(client):
    account, member = _account()
    invoice = _invoice(account)
    client.force_login(member.user)
    url = reverse("subscriptions:invoice_pdf", args=[account.pk, invoice.number])

    with mock.patch.object(documents, "invoice_pdf_render", wraps=documents.invoice_pdf_render) as render:
        first = client.get(url).content
        second = client.get(url).content
        assert render.call_count == 1
        assert first == second

        # A new line, a payment and a changed billing profile each give a new version.
        InvoiceLine.objects.create(
            invoice=invoice, description="Extra licences", quantity=2, unit_price_minor=500, amount_minor=1000
        )
        Invoice.objects.filter(pk=invoice.pk).update(total_minor=invoice.total_minor + 1000)
        assert "Extra licences" in _text(client.get(url).content)
        assert render.call_count == 2
        _pay(invoice, 500)
        client.get(url)
        assert render.call_count == 3
        BillingAccount.objects.filter(pk=account.pk).update(po_number="PO-9999")
        assert "PO-9999" in _text(client.get(url).content)
        assert render.call_count == 4
        client.get(url)
        assert render.call_count == 4
    # Only the newest version is kept on disk.
    files = list(documents._cache_dir().glob(f"{invoice.pk}-*.pdf"))
    assert len(files) == 1


def test_the_invoice_page_shows_the_same_document_and_links_the_pdf(client):
    account, member = _account()
    invoice = _invoice(account)
    client.force_login(member.user)

    page = client.get(reverse("subscriptions:invoice_detail", args=[account.pk, invoice.number]))

    html = page.content.decode()
    assert 'id="invoice-document"' in html
    assert "PO-4711" in html
    assert "Netherlands" in html
    assert "Due on receipt" in html
    assert reverse("subscriptions:invoice_pdf", args=[account.pk, invoice.number]) in html
    # Nothing of the template's own syntax or comments leaks into the document.
    document = html[html.index('id="invoice-document"') :]
    for leaked in ("{#", "#}", "{%", "%}", "{{", "WeasyPrint"):
        assert leaked not in document, leaked


def test_the_pdf_writes_addresses_the_countrys_way_with_names_in_the_accounts_language(client):
    account, member = _account(
        language="nl",
        address_line1="2732 Baker Blvd.",
        postal_code="97403",
        city="Eugene",
        region="OR",
        country="US",
    )
    invoice = _invoice(account)
    client.force_login(member.user)

    text = _text(client.get(reverse("subscriptions:invoice_pdf", args=[account.pk, invoice.number])).content)

    assert "Eugene, OR 97403" in text  # bill-to, US order
    assert "Verenigde Staten" in text
    assert "1015 BS Amsterdam" in text  # the seller, Dutch order
    assert "Nederland" in text
    assert "Netherlands" not in text


def test_another_accounts_invoice_pdf_is_404(client):
    account, _member = _account()
    invoice = _invoice(account)
    client.force_login(outsider())
    assert (
        client.get(reverse("subscriptions:invoice_pdf", args=[account.pk, invoice.number])).status_code == 404
    )
    own = Membership.objects.filter(user__email=_member.user.email).get()
    client.force_login(own.user)
    other, _ = account_with_subscriptions(1)
    other_number = other.invoices.get().number
    assert (
        client.get(reverse("subscriptions:invoice_pdf", args=[account.pk, other_number])).status_code == 404
    )


# -- CSV export ----------------------------------------------------------------------------------------


def _csv(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(body)))


def test_csv_export_streams_the_filtered_invoices(client):
    account, users = account_with_subscriptions(5, past_due=2)
    client.force_login(users["reader"])
    url = reverse("subscriptions:invoices_export", args=[account.pk])

    response = client.get(url)
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = _csv(response)
    assert rows[0][:3] == ["Invoice number", "Date", "Due date"]
    assert len(rows) == 1 + 5

    past_due = _csv(client.get(url + "?status=past_due"))
    assert len(past_due) == 1 + 2
    assert {r[6] for r in past_due[1:]} == {"Past due"}
    assert past_due[1][8] == "10.00"
    assert past_due[1][7] == "EUR"

    # A bad filter is ignored, as on the page, never a 500.
    assert len(_csv(client.get(url + "?issued_from=yesterday&status=bogus"))) == 1 + 5


def test_csv_export_is_dutch_for_a_dutch_account_and_guards_against_formulas(client):
    account, member = _account(language="nl")
    _invoice(account)
    Invoice.objects.update(number="=HYPERLINK(1)")
    client.force_login(member.user)
    rows = _csv(client.get(reverse("subscriptions:invoices_export", args=[account.pk])))
    assert rows[0][0] == "Factuurnummer"
    assert rows[1][0] == "'=HYPERLINK(1)"


def test_csv_export_of_another_account_is_404(client):
    account, _ = account_with_subscriptions(1)
    client.force_login(outsider())
    assert client.get(reverse("subscriptions:invoices_export", args=[account.pk])).status_code == 404


def _bulk_invoices(account: BillingAccount, n: int) -> None:
    sub = SubscriptionFactory(account=account)
    today = timezone.localdate()
    Invoice.objects.bulk_create(
        [
            Invoice(
                account=account,
                subscription=sub,
                number=f"B{account.pk:04d}-{i:06d}",
                currency="EUR",
                total_minor=1000 + i,
                amount_due_minor=1000 + i,
                issued_on=today - dt.timedelta(days=i % 365),
                due_on=today,
            )
            for i in range(n)
        ],
        batch_size=2000,
    )


def csv_export_peak_memory(client, account: BillingAccount) -> tuple[int, int]:
    """Peak Python memory while the whole export is streamed (bytes), and the number of rows."""
    url = reverse("subscriptions:invoices_export", args=[account.pk])
    tracemalloc.start()
    try:
        response = client.get(url)
        rows = 0
        for chunk in response.streaming_content:
            rows += chunk.count(b"\n")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, rows


def test_csv_export_memory_does_not_grow_with_the_number_of_invoices(client, capsys):
    small = cast(BillingAccount, BillingAccountFactory())
    large = cast(BillingAccount, BillingAccountFactory())
    _bulk_invoices(small, 1_000)
    _bulk_invoices(large, 10_000)
    user = cast(Membership, MembershipFactory(account=small, role=Role.READER)).user
    MembershipFactory(account=large, user=user, role=Role.READER)
    client.force_login(user)
    csv_export_peak_memory(client, small)  # warm up: imports, template and translation caches

    small_peak, small_rows = csv_export_peak_memory(client, small)
    large_peak, large_rows = csv_export_peak_memory(client, large)

    assert (small_rows, large_rows) == (1_001, 10_001)
    with capsys.disabled():
        print(
            f"\nCSV export peak memory: {small_peak / 1024:.0f} KiB at 1,000 invoices, "
            f"{large_peak / 1024:.0f} KiB at 10,000 invoices"
        )
    # Constant memory: ten times the rows may not take much more than the chunk the iterator holds.
    assert large_peak < small_peak * 1.5 + 512 * 1024, (small_peak, large_peak)


@pytest.mark.parametrize("attach", [True, False])
def test_payment_and_invoice_mails_carry_the_pdf_when_attachments_are_on(attach):
    from django.core import mail

    from notifications.services import notice_deliver, notice_send

    account, _member = _account(invoice_email_attachments=attach)
    invoice = _invoice(account)
    receipt = notice_send(
        account=account,
        kind="payment_received",
        dedupe_key="payment_received:test",
        context={"reference": "PAY-1", "amount": "€292.50", "method": "Visa", "invoices": invoice.number},
    )
    failed = notice_send(
        account=account,
        kind="payment_failed",
        dedupe_key="payment_failed:test",
        context={"product": "M365", "invoice": invoice.number, "amount": "€292.50", "method": "Visa"},
    )
    assert receipt is not None
    assert failed is not None
    notice_deliver(notice_id=receipt.pk)
    notice_deliver(notice_id=failed.pk)

    assert len(mail.outbox) == 2
    for message in mail.outbox:
        pdfs = [a for a in message.attachments if a[2] == "application/pdf"]
        if attach:
            assert [a[0] for a in pdfs] == ["INV-2026-100001.pdf"]
            assert "INV-2026-100001" in _text(pdfs[0][1])
        else:
            assert pdfs == []


def test_mail_attachments_only_take_the_accounts_own_invoices():
    from notifications.models import Notice
    from notifications.services import notice_invoice_attachments

    account, _member = _account(invoice_email_attachments=True)
    other, _ = account_with_subscriptions(1)
    notice = Notice.objects.create(
        account=account,
        kind="payment_received",
        recipient="x@example.test",
        subject="s",
        dedupe_key="k",
        context={"invoices": other.invoices.get().number},
    )
    assert notice_invoice_attachments(notice=notice) == []


def _full_invoice() -> Invoice:
    """An invoice that prints every block: periods on its lines, a payment, a PO number and remittance."""
    account, _member = _account(**BANK_TRANSFER, address_line2="Unit 4")
    invoice = _invoice(account, due_days=30, status=Invoice.Status.PAST_DUE)
    today = timezone.localdate()
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=invoice,
            description=f"Usage line {i}",
            quantity=i,
            unit_price_minor=1170,
            amount_minor=i * 1170,
            period_start=today,
            period_end=today + dt.timedelta(days=29),
        )
        for i in range(1, 4)
    )
    _pay(invoice, 10000)
    return Invoice.objects.select_related("account").get(pk=invoice.pk)


def _css_names(css: str) -> set[str]:
    """The element names a stylesheet's selectors mention (comments and declarations left out)."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    selectors = " ".join(re.findall(r"([^{}]*)\{", re.sub(r"\{[^{}]*\}", "{}", css)))
    return set(re.findall(r"(?<![-.#:\w@\[])([a-z][a-z0-9]*)\b", selectors))


def test_the_invoice_user_agent_sheet_names_every_element_of_a_full_invoice():
    """invoice-ua.css stands in for WeasyPrint's HTML5 defaults; an element it does not name would lose them
    (a <ul> its margins, a <br> its line break). Inline elements without defaults need no rule."""
    html = documents.invoice_pdf_html(invoice=_full_invoice())
    used = set(re.findall(r"<([a-z][a-z0-9]*)\b", html))
    assert {"table", "th", "td", "dl", "dd", "br", "h2", "h3"} <= used  # the parse found the document
    found = finders.find("css/invoice-ua.css")
    assert found
    named = _css_names(Path(found).read_text())
    inline_without_defaults = {"span", "abbr", "time", "bdi", "data"}
    assert used - named - inline_without_defaults == set()


def test_the_invoice_user_agent_sheet_is_used_and_prints_what_weasyprints_own_sheet_prints():
    """The same pages with the same text in the same places, with invoice-ua.css as with WeasyPrint's own
    HTML5 sheet; and WeasyPrint still asks the invoice's document class for its user-agent sheet."""
    from weasyprint import HTML

    html = documents.invoice_pdf_html(invoice=_full_invoice())
    tools = documents._pdf_tools()
    asked = []
    real = tools.html._ua_stylesheets

    def ua_stylesheets(self, forms=False):
        asked.append(forms)
        return real(self, forms)

    with mock.patch.object(tools.html, "_ua_stylesheets", ua_stylesheets):
        ours = documents.pdf_from_html(html)
    assert asked, "WeasyPrint no longer calls HTML._ua_stylesheets: invoice-ua.css is not applied"
    weasyprints = HTML(string=html, base_url="data:,", url_fetcher=tools.fetcher).write_pdf(
        stylesheets=tools.stylesheets
    )

    def pages(pdf: bytes) -> list[str]:
        return [page.extract_text(extraction_mode="layout") for page in PdfReader(io.BytesIO(pdf)).pages]

    assert pages(ours) == pages(weasyprints)
    assert "NL91ABNA0417164300" in pages(ours)[-1]

    # And every box of the layout in the same place with the same size (WeasyPrint's laid-out pages).
    def boxes(document_class) -> list[list[tuple]]:
        document = document_class(string=html, base_url="data:,", url_fetcher=tools.fetcher).render(
            stylesheets=tools.stylesheets
        )
        return [
            [
                (type(box).__name__, box.element_tag, *(round(getattr(box, name), 3) for name in GEOMETRY))
                for box in page._page_box.descendants()
            ]
            for page in document.pages
        ]

    ours_boxes, weasyprints_boxes = boxes(tools.html), boxes(HTML)
    assert sum(map(len, ours_boxes)) > 100
    assert ours_boxes == weasyprints_boxes


GEOMETRY = ("position_x", "position_y", "width", "height", "margin_top", "margin_left", "padding_top")
