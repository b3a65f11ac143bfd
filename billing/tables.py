"""The body rows of the two long tables, Your products and Invoices, written as HTML here.

A page of rows is the one part of these pages that grows with the account, and Django's template engine
pays for every variable, tag and escape once per cell: 25 rows of Your products cost 2.6 ms of template
time against 4 ms for the whole admin-center shell. So, as Django's own admin writes its change list's
cells in Python (`items_for_result`), each row is one f-string filled with values that were worked out,
translated and escaped once per page (billing.selectors' ProductRow and InvoiceRow, billing.views' shared
parts): 0.3 ms for the 25 rows. (`format_html` per row cost 1.2 ms: a `str.format` with a dozen keyword
arguments and a `conditional_escape` call for each, even for SafeStrings, which it passes through.)
The table around the rows, its header, pagination and empty states stay in the templates.

Escaping, as the template did it: the rows' display values are SafeStrings, escaped once when they were
made (their types say so, and mypy holds every assignment to them); the URLs are plain strings and are
escaped here; the labels are escaped once per page; a row's class is one of billing.selectors' constants. The one text not escaped is the translation that was a
`{% blocktranslate %}` in the template, which Django trusts there too; its value, a formatted date, is
escaped.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

from billing_portal.templatetags.portal import icon
from subscriptions.models import Subscription

from .selectors import InvoiceRow, ProductRow

_NO_VALUE = '<span class="muted">—</span>'


def product_rows_html(rows: Iterable[ProductRow], *, row_menus: bool) -> SafeString:
    """Your products' `<tr>`s (deleted subscriptions are not listed). `row_menus`: each row ends with its
    "…" menu (Replace payment method)."""
    timeline = escape(gettext("Payment timeline"))
    reactivate = escape(gettext("Reactivate subscription"))
    replace = escape(gettext("Replace payment method"))
    # The text of the template's {% blocktranslate %}, and the same catalogue entry: trusted, as there.
    deleted_text = gettext("Cancelled for non-payment; its data is deleted on %(date)s.")
    more_icon, swap_icon = icon("more"), icon("swap")
    html = []
    for row in rows:
        detail_url = escape(row.detail_url)
        if row.unpaid:
            extra = (
                f'{row.note}<span class="cell-actions">{row.settle}'
                f'<a class="cell-sub" href="{escape(row.timeline_url)}">{timeline}</a></span>'
            )
        elif row.data_deleted_on:
            extra = (
                f'<span class="cell-sub">{deleted_text % {"date": row.data_deleted_on}}</span>'
                f'<a class="cell-sub" href="{detail_url}">{reactivate}</a>'
            )
        else:
            extra = ""
        menu = ""
        if row_menus and row.status == Subscription.Status.DELETED:
            menu = '<td class="num"></td>'  # not listed today (product_page leaves them out); no menu if they were
        elif row_menus:
            replace_url = escape(row.replace_url)
            menu = (
                f'<td class="num"><details class="menu row-menu"><summary aria-label="{row.menu_label}">'
                f'{more_icon}</summary><div class="menu__list"><a href="{replace_url}" '
                f'hx-get="{replace_url}" hx-target="#side-pane" hx-swap="innerHTML">{swap_icon}{replace}'
                "</a></div></details></td>"
            )
        html.append(
            f'<tr class="{row.row_class}"><th scope="row">'
            f'<a class="cell-main" href="{detail_url}">{row.product_name}</a>{extra}</th>'
            f'<td class="num">{row.quantity}</td>'
            f'<td class="num">{row.price}<span class="cell-sub">{row.period_label}</span></td>'
            f"<td>{row.status_cell}</td><td>{row.method_cell}</td>"
            f'<td class="nowrap">{row.renews_on or _NO_VALUE}</td>{menu}</tr>\n'
        )
    return mark_safe("".join(html))  # noqa: S308 - each value is escaped here or was escaped in its SafeString


def invoice_rows_html(rows: Iterable[InvoiceRow]) -> SafeString:
    """The Invoices tab's `<tr>`s. A row has Pay now when the view gave it a pay URL."""
    pay = escape(gettext("Pay now"))
    pdf_text = escape(gettext("Download PDF"))
    download_icon = icon("download", "icon--16")
    html = []
    for row in rows:
        period = (
            f'<span class="nowrap">{row.period_start} –</span> <span class="nowrap">{row.period_end}</span>'
            if row.period_start
            else _NO_VALUE
        )
        pay_now = ""
        if row.pay_url:  # as payments/includes/pay_now_action.html draws it in a table
            pay_url = escape(row.pay_url)
            pay_now = (
                f'<a class="btn btn--link pay-now-action" href="{pay_url}" hx-get="{pay_url}" '
                f'hx-target="#side-pane" hx-swap="innerHTML" hx-disabled-elt="this">{pay}</a>'
            )
        html.append(
            f'<tr><th scope="row"><a class="nowrap" href="{escape(row.detail_url)}">{escape(row.number)}</a></th>'
            f'<td class="nowrap">{row.issued_on}</td><td>{period}</td><td>{row.transaction_type}</td>'
            f'<td class="num">{row.total}</td><td class="num">{row.amount_due}</td>'
            f'<td class="nowrap">{row.due_on}</td><td>{row.status_cell}{pay_now}</td>'
            f'<td class="nowrap"><a href="{escape(row.pdf_url)}" download aria-label="{escape(row.pdf_label)}">'
            f"{download_icon}{pdf_text}</a></td></tr>\n"
        )
    return mark_safe("".join(html))  # noqa: S308 - each value is escaped here or was escaped in its SafeString
