"""Invoice documents: the PDF (WeasyPrint) and the CSV export of the Invoices tab.

The invoice as a document prints its payments, credit notes and refunds, so it lives with the billing pages,
above payments (it moved here from subscriptions/). Mail gets its PDFs through `notice_invoice_pdfs`, which
BillingConfig.ready() registers with notifications.

One template for the invoice: `subscriptions/includes/invoice_document.html` is the body of the invoice page
and of the PDF (`subscriptions/invoice_pdf.html` wraps it in a print page), so both show the same document.

PDFs are made on demand and cached as files under `INVOICE_PDF_CACHE_DIR`, named by the invoice's id and a
*version*: a hash of everything the document prints (the invoice, its lines, its payments, the account's
billing profile, the seller block and the template revision). Any change gives a new version and so a new
file; an unchanged invoice is served from the file without rendering.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.staticfiles import finders
from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _

from accounts.models import BillingAccount
from billing_portal.addresses import PostalAddress, format_address
from billing_portal.money import Money
from payments.models import CreditNote, DisputeReversal, PaymentAllocation
from payments.selectors import invoice_money_history
from subscriptions.models import Invoice, InvoiceLine

# Bump when the invoice template or its stylesheet changes what a PDF looks like: old files go stale.
TEMPLATE_REVISION = "5"
# Rows fetched per round trip; the export holds at most one chunk, whatever the number of invoices.
CSV_CHUNK_SIZE = 500


def bill_to_lines(account: BillingAccount, language: str) -> list[str]:
    return format_address(PostalAddress.of(account), language)


def seller_lines(language: str) -> list[str]:
    seller = settings.BILLING_SELLER
    return format_address(
        PostalAddress(
            line1=seller.get("address_line1", ""),
            postal_code=seller.get("postal_code", ""),
            city=seller.get("city", ""),
            region=seller.get("region", ""),
            country=seller.get("country", ""),
        ),
        language,
    )


def payment_terms(invoice: Invoice) -> str:
    """What the invoice says about when to pay: due on its issue date means due on receipt."""
    days = (invoice.due_on - invoice.issued_on).days
    if days <= 0:
        return _("Due on receipt")
    return translation.ngettext("Net %(days)d day", "Net %(days)d days", days) % {"days": days}


@dataclass(frozen=True)
class InvoicePayment:
    """One line of the invoice's money history as the document lists it: a payment or credit note (lowers
    what is due), or a refund or lost chargeback (`raises`: makes that amount due again)."""

    kind: str
    reference: str
    date: dt.date | dt.datetime | None
    method: str
    amount_minor: int
    raises: bool = False


def invoice_payments(*, invoice: Invoice) -> list[InvoicePayment]:
    """Payments, credit notes, refunds and lost chargebacks of the invoice, oldest first (payments'
    invoice_money_history: three queries)."""
    kinds = {
        "payment": _("Payment"),
        "credit_note": _("Credit note"),
        "refund": _("Refund"),
        "chargeback": _("Chargeback"),
    }
    return [
        InvoicePayment(
            kind=str(kinds.get(row.kind, row.kind)),
            reference=row.reference,
            date=row.at,
            method=row.description,
            amount_minor=row.amount.amount_minor,
            raises=row.kind in ("refund", "chargeback"),
        )
        for row in invoice_money_history(invoice=invoice)
    ]


def invoice_document_context(*, invoice: Invoice, lines: Iterable[InvoiceLine]) -> dict[str, Any]:
    """What `invoice_document.html` needs beside `invoice` and `account`; in the active language."""
    account = invoice.account
    language = translation.get_language() or account.language
    lines = list(lines)
    subtotal = sum(line.amount_minor for line in lines)
    payments = invoice_payments(invoice=invoice)
    return {
        "lines": lines,
        # The lines' own service period is a column only when some line differs from the invoice's period.
        "line_periods": any(
            (line.period_start, line.period_end) != (invoice.period_start, invoice.period_end)
            and line.period_start is not None
            for line in lines
        ),
        "seller": settings.BILLING_SELLER,
        "bill_to_lines": bill_to_lines(account, language),
        "seller_lines": seller_lines(language),
        "subtotal_minor": subtotal,
        # The stored total is what is owed; anything on top of the lines is the tax charged on them.
        "tax_minor": invoice.total_minor - subtotal,
        "payments": payments,
        "payments_total_minor": sum(-p.amount_minor if p.raises else p.amount_minor for p in payments),
        "payment_terms": payment_terms(invoice),
        "show_remittance": account.pays_by_bank_transfer and invoice.status != Invoice.Status.PAID,
    }


# -- the PDF ---------------------------------------------------------------------------------------


def invoice_pdf_version(*, invoice: Invoice) -> str:
    """A hash of everything the PDF prints. Two queries (lines, payments)."""
    account = invoice.account
    lines = list(
        InvoiceLine.objects.filter(invoice=invoice)
        .order_by("pk")
        .values_list("pk", "description", "quantity", "unit_price_minor", "amount_minor", "period_start")
    )
    allocations = list(
        PaymentAllocation.objects.filter(invoice=invoice)
        .order_by("pk")
        .values_list("pk", "amount_minor", "applied_minor", "attempt__status", "attempt__completed_at")
    )
    # Refunds leave credit notes and lost chargebacks reversals without changing the amount due or the
    # status, so they are part of the version in their own right.
    credits = list(
        CreditNote.objects.filter(invoice=invoice).order_by("pk").values_list("pk", "amount_minor")
    )
    reversals = list(
        DisputeReversal.objects.filter(invoice=invoice).order_by("pk").values_list("pk", "amount_minor")
    )
    state = {
        "t": TEMPLATE_REVISION,
        "invoice": [
            invoice.number,
            invoice.status,
            invoice.transaction_type,
            invoice.currency,
            invoice.total_minor,
            invoice.amount_due_minor,
            invoice.issued_on,
            invoice.due_on,
            invoice.period_start,
            invoice.period_end,
            invoice.paid_at,
        ],
        "lines": lines,
        "allocations": allocations,
        "credits": credits,
        "reversals": reversals,
        "account": [
            account.name,
            account.language,
            account.address_line1,
            account.address_line2,
            account.postal_code,
            account.city,
            account.region,
            account.country,
            account.tax_id,
            account.po_number,
            account.payment_mode,
            account.remittance_bank_name,
            account.remittance_account_holder,
            account.remittance_iban,
            account.remittance_bic,
        ],
        "seller": settings.BILLING_SELLER,
    }
    raw = json.dumps(state, default=str, sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:20]


def _cache_dir() -> Path:
    path = Path(settings.INVOICE_PDF_CACHE_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def invoice_pdf_filename(invoice: Invoice) -> str:
    return f"{invoice.number}.pdf"


@dataclass(frozen=True)
class _PdfTools:
    fetcher: Any
    stylesheets: list[Any]
    html: Any  # weasyprint.HTML with the invoice's own user-agent stylesheet


@functools.cache
def _pdf_tools() -> _PdfTools:
    """WeasyPrint's URL fetcher, the stylesheets and the document class, made once per process: parsing the
    CSS and building a fetcher (it sets up TLS) cost more than laying out a short invoice. The fetcher only
    reads data: URLs; an invoice loads nothing from the network or the disk.

    The document class replaces WeasyPrint's HTML5 user-agent stylesheet with `invoice-ua.css`: the same
    defaults for the elements an invoice has, without the rules that no element name indexes and that the
    cascade therefore tests on every table cell (see the sheet's header). `_ua_stylesheets` is the hook
    WeasyPrint's own test suite overrides for its test sheet; the invoice tests check it is still called."""
    from weasyprint import CSS, HTML, URLFetcher

    def sheet(name: str) -> Any:
        found = finders.find(name)
        if not found:
            raise FileNotFoundError(f"static/{name} is missing")
        return CSS(filename=str(found), url_fetcher=fetcher)

    fetcher = URLFetcher(allowed_protocols=("data",))
    user_agent = sheet("css/invoice-ua.css")

    class InvoiceHTML(HTML):
        def _ua_stylesheets(self, forms: bool = False) -> list[Any]:
            return [user_agent]

    return _PdfTools(
        fetcher=fetcher,
        stylesheets=[sheet("css/invoice.css"), sheet("css/invoice-print.css")],
        html=InvoiceHTML,
    )


def invoice_pdf_html(*, invoice: Invoice) -> str:
    """The PDF's HTML, in the account's language: the template half of invoice_pdf_render (a few
    hundredths of a second at 500 lines; bench/invoice_documents.py measures it apart from WeasyPrint)."""
    account = invoice.account
    with translation.override(account.language):
        lines = InvoiceLine.objects.filter(invoice=invoice).order_by("pk")
        return render_to_string(
            "subscriptions/invoice_pdf.html",
            {
                "invoice": invoice,
                "account": account,
                **invoice_document_context(invoice=invoice, lines=lines),
            },
        )


def pdf_from_html(html: str) -> bytes:
    """WeasyPrint's half of invoice_pdf_render: lay out and draw the invoice's HTML with the invoice
    stylesheets. Nearly all of a long invoice's render time is here, per table cell."""
    tools = _pdf_tools()  # imports WeasyPrint on first use: loading pango costs time every process would pay
    document = tools.html(string=html, base_url="data:,", url_fetcher=tools.fetcher)
    return document.write_pdf(stylesheets=tools.stylesheets)


def invoice_pdf_render(*, invoice: Invoice) -> bytes:
    """Render the PDF now, in the account's language. Slow (WeasyPrint): callers go through invoice_pdf()."""
    return pdf_from_html(invoice_pdf_html(invoice=invoice))


def invoice_pdf(*, invoice: Invoice) -> bytes:
    """The invoice's PDF: from the cache when its version has one, else rendered and stored.

    Writes go to a temporary file that is renamed into place, so two requests rendering the same version
    at once both end with a whole file; stale versions of the invoice are removed.
    """
    version = invoice_pdf_version(invoice=invoice)
    directory = _cache_dir()
    path = directory / f"{invoice.pk}-{version}.pdf"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    data = invoice_pdf_render(invoice=invoice)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{invoice.pk}-", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
    for stale in directory.glob(f"{invoice.pk}-*.pdf"):
        if stale != path:
            stale.unlink(missing_ok=True)
    return data


# -- the CSV export --------------------------------------------------------------------------------


def _csv_line(values: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()


def invoices_csv(*, invoices: QuerySet[Invoice], language: str) -> Iterator[str]:
    """The Invoices tab as CSV, one line at a time: rows come from the database in chunks
    (`iterator(chunk_size=…)`), so the memory it takes does not grow with the number of invoices.

    Amounts are plain decimals with a currency column (a spreadsheet can add them up); dates are ISO.
    """
    with translation.override(language):
        header = [
            _("Invoice number"),
            _("Date"),
            _("Due date"),
            _("Service period start"),
            _("Service period end"),
            _("Transaction type"),
            _("Status"),
            _("Currency"),
            _("Total amount"),
            _("Amount due"),
        ]
        types = dict(Invoice.TransactionType.choices)
        statuses = dict(Invoice.Status.choices)
        yield "\ufeff" + _csv_line([str(h) for h in header])  # BOM: spreadsheets then read UTF-8
        rows = invoices.values_list(
            "number",
            "issued_on",
            "due_on",
            "period_start",
            "period_end",
            "transaction_type",
            "status",
            "currency",
            "total_minor",
            "amount_due_minor",
        ).iterator(chunk_size=CSV_CHUNK_SIZE)
        for number, issued, due, start, end, kind, status, currency, total, due_minor in rows:
            yield _csv_line(
                [
                    _csv_safe(number),
                    issued.isoformat(),
                    due.isoformat(),
                    start.isoformat() if start else "",
                    end.isoformat() if end else "",
                    str(types.get(kind, kind)),
                    str(statuses.get(status, status)),
                    currency,
                    str(Money(total, currency).decimal),
                    str(Money(due_minor, currency).decimal),
                ]
            )


def _csv_safe(value: str) -> str:
    """Keep a spreadsheet from reading a cell as a formula (CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def notice_invoice_pdfs(*, account_id: int, numbers: list[str]) -> list[tuple[str, bytes]]:
    """The PDFs a mail attaches (notifications.services.notice_invoice_attachments), as (filename, data):
    the account's invoices with these numbers, in number order. Another account's number is ignored."""
    invoices = Invoice.objects.filter(account_id=account_id, number__in=numbers).select_related("account")
    return [
        (invoice_pdf_filename(i), invoice_pdf(invoice=i)) for i in sorted(invoices, key=lambda i: i.number)
    ]
