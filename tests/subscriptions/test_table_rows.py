"""The rows of Your products and Invoices, written by billing.tables rather than a template loop: every
kind of row has its cells, links and actions, a member sees the actions of their role, and whatever a
name or number holds is printed as text, never as markup."""

from __future__ import annotations

import dataclasses
import datetime as dt
from html.parser import HTMLParser

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from billing.selectors import InvoiceRow, ProductRow
from billing.tables import invoice_rows_html, product_rows_html
from subscriptions.models import Invoice, Subscription
from tests.factories import InvoiceFactory, ProductFactory, SubscriptionFactory
from tests.pages_helpers import account_with_subscriptions

pytestmark = pytest.mark.django_db

HOSTILE = '<img src=x onerror="alert(1)">&amp;'


class _Rows(HTMLParser):
    """The body rows of the page's table: per row, its cells' text and the links (text, href) in it."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, list]] = []
        self._in_body = False
        self._cell: list[str] | None = None
        self._link: list[str] | None = None
        self._href = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append({"cells": [], "links": [], "tags": []})
        elif self._in_body and self.rows:
            self.rows[-1]["tags"].append(tag)
            if tag in ("td", "th"):
                self._cell = []
                self.rows[-1]["cells"].append(self._cell)
            elif tag == "a":
                self._link, self._href = [], dict(attrs).get("href") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "a" and self._link is not None and self.rows:
            self.rows[-1]["links"].append(("".join(self._link).strip(), self._href))
            self._link = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._link is not None:
            self._link.append(data)


def _rows(body: str) -> list[dict[str, list]]:
    parser = _Rows()
    parser.feed(body)
    return parser.rows


def _text(row: dict[str, list]) -> str:
    return " ".join("".join(cell) for cell in row["cells"])


def _products(client, account, user) -> tuple[str, list[dict[str, list]]]:
    client.force_login(user)
    response = client.get(reverse("subscriptions:products", kwargs={"account_id": account.pk}))
    assert response.status_code == 200
    body = response.content.decode()
    return body, _rows(body)


def test_every_kind_of_product_row_has_its_cells_links_and_actions(client):
    account, users = account_with_subscriptions(2, past_due=1)
    now = timezone.now()
    SubscriptionFactory(
        account=account,
        product=ProductFactory(name="Cancelled Suite"),
        status=Subscription.Status.CANCELLED,
        cancelled_at=now,
        next_lifecycle_at=now + dt.timedelta(days=20),
    )
    _body, rows = _products(client, account, users["owner"])
    assert len(rows) == 3
    unpaid, paid, cancelled = rows  # rows that need attention first, cancelled ones last
    for row in rows:
        assert len(row["cells"]) == 7  # product, licenses, price, status, method, renewal, "…" menu

    assert "Subscription has a past due payment" in _text(unpaid)
    link_texts = [text for text, _href in unpaid["links"]]
    assert "Payment timeline" in link_texts
    assert "Settle balance" in link_texts
    assert "Replace payment method" in link_texts
    assert "Visa ending 0341" in _text(unpaid)
    assert "Declined" in _text(unpaid)

    assert "Cancelled Suite" in _text(cancelled)
    assert "its data is deleted on" in _text(cancelled)
    reactivate = [href for text, href in cancelled["links"] if text == "Reactivate subscription"]
    assert reactivate == [cancelled["links"][0][1]]  # the subscription's own page, as its name links

    assert "Payment timeline" not in _text(paid)
    assert "Mastercard ending 4444" in _text(paid)
    assert "—" not in "".join(paid["cells"][5])  # an active subscription shows its renewal date

    # A reader sees the same rows without the "…" menu (its cell is not drawn at all).
    _body, reader_rows = _products(client, account, users["reader"])
    assert [len(row["cells"]) for row in reader_rows] == [6, 6, 6]
    assert not any(text == "Replace payment method" for row in reader_rows for text, _ in row["links"])


def test_deleted_subscriptions_are_not_listed(client):
    account, users = account_with_subscriptions(1)
    SubscriptionFactory(
        account=account,
        product=ProductFactory(name="Gone Suite"),
        status=Subscription.Status.DELETED,
        cancelled_at=timezone.now(),
    )
    body, rows = _products(client, account, users["owner"])
    assert [len(row["cells"]) for row in rows] == [7]
    assert "Gone Suite" not in body


def test_names_are_text_not_markup_in_product_rows(client):
    account, users = account_with_subscriptions(0)
    SubscriptionFactory(account=account, product=ProductFactory(name=HOSTILE))
    body, rows = _products(client, account, users["owner"])
    assert "<img" not in body
    assert HOSTILE in _text(rows[0])  # the parser unescapes what the page escaped: the name as it was typed


def test_dutch_product_rows(client):
    account, users = account_with_subscriptions(1, past_due=1)
    account.language = "nl"
    account.save(update_fields=["language"])
    SubscriptionFactory(
        account=account,
        status=Subscription.Status.CANCELLED,
        cancelled_at=timezone.now(),
        next_lifecycle_at=timezone.now() + dt.timedelta(days=20),
    )
    with translation.override("nl"):
        _body, rows = _products(client, account, users["owner"])
    texts = " ".join(_text(row) for row in rows)
    links = [text for row in rows for text, _ in row["links"]]
    assert "Betalingstijdlijn" in links
    assert "Abonnement opnieuw activeren" in links
    assert "Betalingsmethode vervangen" in links
    assert "de gegevens worden op" in texts


def test_invoice_rows_have_their_cells_and_pay_now_for_those_who_may_pay(client):
    account, users = account_with_subscriptions(2, past_due=1)
    sub = Subscription.objects.filter(account=account).first()
    InvoiceFactory(
        subscription=sub,
        number=f"X{HOSTILE[:20]}",
        status=Invoice.Status.PAID,
        amount_due_minor=0,
        paid_at=timezone.now(),
    )
    url = reverse("subscriptions:invoices", kwargs={"account_id": account.pk})

    client.force_login(users["owner"])
    body = client.get(url).content.decode()
    rows = _rows(body)
    assert len(rows) == 3
    assert "<img" not in body
    for row in rows:
        assert len(row["cells"]) == 9
        number = "".join(row["cells"][0]).strip()
        texts = [text for text, _ in row["links"]]
        assert texts[0] == number
        assert "Download PDF" in texts
        assert "pdf" in row["links"][-1][1]
    payable = [row for row in rows if "Pay now" in [text for text, _ in row["links"]]]
    assert len(payable) == 2  # the past-due and the open invoice, not the paid one
    assert any("".join(rows[i]["cells"][0]).strip() == f"X{HOSTILE[:20]}" for i in range(3))

    client.force_login(users["reader"])
    reader_rows = _rows(client.get(url).content.decode())
    assert not any("Pay now" in text for row in reader_rows for text, _ in row["links"])


def _hostile(row_type, **flags):
    """A row whose every text field holds markup as a plain string, as if a caller forgot to escape it."""
    values = {}
    for f in dataclasses.fields(row_type):
        if f.name in flags:
            values[f.name] = flags[f.name]
        elif f.type in ("str", "SafeString"):
            values[f.name] = f'<b id="{f.name}">"&'
        elif f.type == "bool":
            values[f.name] = True
        else:
            values[f.name] = 1
    return row_type(**values)


def test_rows_escape_every_value_themselves():
    """billing.tables escapes each value it prints, so a value that was not escaped upstream (a plain
    string where a SafeString belongs) still prints as text, in every branch of a row."""
    products = product_rows_html(
        [
            _hostile(ProductRow, unpaid=True),
            _hostile(ProductRow, unpaid=False),  # data_deleted_on set: the reactivate branch
        ],
        row_menus=True,
    )
    invoices = invoice_rows_html([_hostile(InvoiceRow)])
    for html in (products, invoices):
        assert "<b" not in html
    escaped = "&gt;&quot;&amp;"  # the end of every hostile value, escaped once
    assert products.count(escaped) >= 20
    assert invoices.count(escaped) >= 12
