"""Invoice documents and the Azure lifecycle in Chromium: Download PDF, Export to CSV, the Warned banner, the
subscription details page and the Reactivate pane. Screenshots land in test-results/screenshots/<name>.png and
the first page of the downloaded PDF in test-results/screenshots/invoice-pdf-1.png (pdftoppm, when installed).
"""

from __future__ import annotations

import datetime as dt
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect
from pypdf import PdfReader

from subscriptions.models import Subscription
from tests.pages_helpers import demo_account
from tests.test_browser_pages import SHOTS, _assert_accessible, _shot, _sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BANNER = "This subscription will be disabled for non-payment. Settle outstanding charges."


@pytest.fixture(autouse=True)
def _pdf_cache(settings, tmp_path):
    settings.INVOICE_PDF_CACHE_DIR = tmp_path / "invoice-pdfs"


def test_download_pdf_and_export_csv_from_the_invoices_tab(live_server, demo_page: Page):
    page = demo_page
    base = live_server.url
    contoso = demo_account("Contoso Ltd")
    _sign_in(page, base, "admin@contoso.example")
    page.goto(f"{base}/a/{contoso.pk}/billing/invoices/")

    with page.expect_download() as csv_download:
        page.get_by_role("link", name="Export to CSV").click()
    body = Path(csv_download.value.path()).read_text(encoding="utf-8-sig")
    assert body.startswith("Invoice number,Date,Due date")
    assert "INV-2026-100001" in body
    assert "INV-2026-100005" in body

    with page.expect_download() as pdf_download:
        page.get_by_role("link", name="Download PDF of invoice INV-2026-100001").click()
    assert pdf_download.value.suggested_filename == "INV-2026-100001.pdf"
    data = Path(pdf_download.value.path()).read_bytes()
    assert data.startswith(b"%PDF-")
    text = PdfReader(io.BytesIO(data)).pages[0].extract_text()
    assert "INV-2026-100001" in text
    assert "Contoso Ltd" in text
    assert "Due on receipt" in text
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "invoice-INV-2026-100001.pdf").write_bytes(data)
    if shutil.which("pdftoppm"):
        subprocess.run(
            [
                "pdftoppm",
                "-png",
                "-r",
                "80",
                "-f",
                "1",
                "-l",
                "1",
                "-singlefile",
                str(SHOTS / "invoice-INV-2026-100001.pdf"),
                str(SHOTS / "invoice-pdf-1"),
            ],
            check=True,
        )

    page.get_by_role("link", name="INV-2026-100001", exact=True).click()
    document = page.locator("#invoice-document")
    expect(document).to_contain_text("Payment terms: Due on receipt")
    expect(document).to_contain_text("Netherlands")
    expect(page.get_by_role("link", name="Download PDF")).to_be_visible()
    _shot(page, "invoice-detail-document")
    _assert_accessible(page, "invoice-detail-document")
    assert page.errors == []


def test_warned_banner_details_page_and_reactivate_pane(live_server, demo_page: Page):
    page = demo_page
    base = live_server.url
    contoso = demo_account("Contoso Ltd")
    power_bi = Subscription.objects.get(account=contoso, product__name="Power BI Pro")
    Subscription.objects.filter(pk=power_bi.pk).update(
        status=Subscription.Status.WARNED, grace_ends_at=timezone.now() + dt.timedelta(days=2)
    )
    visio = Subscription.objects.get(account=contoso, product__name="Visio Plan 2")
    Subscription.objects.filter(pk=visio.pk).update(
        status=Subscription.Status.CANCELLED,
        cancelled_at=timezone.now() - dt.timedelta(days=3),
        disabled_at=timezone.now() - dt.timedelta(days=60),
        next_lifecycle_at=timezone.now() + dt.timedelta(days=87),
    )
    _sign_in(page, base, "admin@contoso.example")

    banner = page.locator("#warned-banner")
    expect(banner).to_contain_text(BANNER)
    expect(banner.get_by_role("link", name="Power BI Pro")).to_be_visible()
    _shot(page, "home-warned")
    _assert_accessible(page, "home-warned")

    page.goto(f"{base}/a/{contoso.pk}/products/")
    row = page.locator("tbody tr", has_text="Power BI Pro")
    expect(row).to_contain_text(BANNER)
    expect(row).to_contain_text("Warned")
    _shot(page, "your-products-warned")
    _assert_accessible(page, "your-products-warned")

    row.get_by_role("link", name="Power BI Pro").click()
    expect(page).to_have_url(f"{base}/a/{contoso.pk}/products/{power_bi.pk}/")
    expect(page.get_by_role("heading", name="Subscription and payment settings")).to_be_visible()
    expect(page.locator("#warned-banner")).to_contain_text(BANNER)
    expect(page.get_by_role("link", name="Replace payment method")).to_be_visible()
    expect(page.get_by_role("link", name="Payment timeline")).to_be_visible()
    _shot(page, "subscription-details-warned")
    _assert_accessible(page, "subscription-details-warned")

    page.goto(f"{base}/a/{contoso.pk}/products/{visio.pk}/")
    opener = page.get_by_role("link", name="Reactivate subscription")
    opener.focus()
    page.keyboard.press("Enter")  # keyboard-usable: the pane opens from the keyboard
    pane = page.get_by_role("dialog", name="Reactivate subscription")
    expect(pane).to_be_visible()
    expect(pane).to_contain_text("€14.00")
    expect(page.locator("#side-pane-host")).not_to_have_class(re.compile("is-entering"))
    _shot(page, "pane-reactivate")
    _assert_accessible(page, "pane-reactivate")

    pane.get_by_role("button", name="Continue to Settle balance").click()
    settle = page.get_by_role("dialog", name="Settle balance")
    expect(settle).to_be_visible()
    _shot(page, "pane-reactivate-settle")
    visio.refresh_from_db()
    assert visio.reactivation_requested_at is not None
    assert page.errors == []
