"""The body rows of the two long tables, Your products and Invoices, written as HTML here.

A page of rows is the one part of these pages that grows with the account, and Django's template engine
pays for every variable, tag and escape once per cell: 25 rows of Your products cost 2.6 ms of template
time against 4 ms for the whole admin-center shell. So, as Django's own admin writes its change list's
cells in Python (`items_for_result`), each row is one f-string filled with values that were worked out,
translated and escaped once per page (billing.selectors' ProductRow and InvoiceRow, billing.views' shared
parts): 0.5 ms for the 25 rows, against 1.1 ms with `format_html_join` (a `str.format` and an escape call
per argument, for the same output). The table around the rows, its header, pagination and empty states
stay in the templates.

Escaping is local, so it can be checked by reading this module: every value put into a row goes through
`esc` (Django's `conditional_escape`, as `{{ }}` and `format_html` use it). It escapes a plain string
and passes a SafeString (escaped once when it was made) through at the cost of a call. What is joined
unescaped is only this module's literal markup; that is why each function may end in `mark_safe`. The
translation that was a `{% blocktranslate %}` in the template is escaped too (Django trusts it there).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.utils.html import conditional_escape as esc
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

from billing_portal.templatetags.portal import icon
from subscriptions.models import Subscription

from .selectors import InvoiceRow, ProductRow

_NO_VALUE = '<span class="muted">—</span>'


def product_rows_html(rows: Iterable[ProductRow], *, row_menus: bool) -> SafeString:
    """Your products' `<tr>`s (deleted subscriptions are not listed). `row_menus`: each row ends with its
    "…" menu (Replace payment method)."""
    timeline = esc(gettext("Payment timeline"))
    reactivate = esc(gettext("Reactivate subscription"))
    replace = esc(gettext("Replace payment method"))
    # The text of the template's {% blocktranslate %}, and the same catalogue entry; escaped here as well.
    deleted_text = esc(gettext("Cancelled for non-payment; its data is deleted on %(date)s."))
    more_icon, swap_icon = esc(icon("more")), esc(icon("swap"))
    html = []
    for row in rows:
        detail_url = esc(row.detail_url)
        if row.unpaid:
            extra = (
                f'{esc(row.note)}<span class="cell-actions">{esc(row.settle)}'
                f'<a class="cell-sub" href="{esc(row.timeline_url)}">{timeline}</a></span>'
            )
        elif row.data_deleted_on:
            extra = (
                f'<span class="cell-sub">{deleted_text % {"date": esc(row.data_deleted_on)}}</span>'
                f'<a class="cell-sub" href="{detail_url}">{reactivate}</a>'
            )
        else:
            extra = ""
        menu = ""
        if row_menus and row.status == Subscription.Status.DELETED:
            menu = '<td class="num"></td>'  # not listed today (product_page leaves them out); no menu if they were
        elif row_menus:
            replace_url = esc(row.replace_url)
            menu = (
                f'<td class="num"><details class="menu row-menu"><summary aria-label="{esc(row.menu_label)}">'
                f'{more_icon}</summary><div class="menu__list"><a href="{replace_url}" '
                f'hx-get="{replace_url}" hx-target="#side-pane" hx-swap="innerHTML">{swap_icon}{replace}'
                "</a></div></details></td>"
            )
        html.append(
            f'<tr class="{esc(row.row_class)}"><th scope="row">'
            f'<a class="cell-main" href="{detail_url}">{esc(row.product_name)}</a>{extra}</th>'
            f'<td class="num">{esc(row.quantity)}</td>'
            f'<td class="num">{esc(row.price)}<span class="cell-sub">{esc(row.period_label)}</span></td>'
            f"<td>{esc(row.status_cell)}</td><td>{esc(row.method_cell)}</td>"
            f'<td class="nowrap">{esc(row.renews_on) or _NO_VALUE}</td>{menu}</tr>\n'
        )
    return mark_safe("".join(html))  # noqa: S308 - only this module's literals and esc() output are joined


def invoice_rows_html(rows: Iterable[InvoiceRow]) -> SafeString:
    """The Invoices tab's `<tr>`s. A row has Pay now when the view gave it a pay URL."""
    pay = esc(gettext("Pay now"))
    pdf_text = esc(gettext("Download PDF"))
    download_icon = esc(icon("download", "icon--16"))
    html = []
    for row in rows:
        period = (
            f'<span class="nowrap">{esc(row.period_start)} –</span> <span class="nowrap">{esc(row.period_end)}</span>'
            if row.period_start
            else _NO_VALUE
        )
        pay_now = ""
        if row.pay_url:  # as payments/includes/pay_now_action.html draws it in a table
            pay_url = esc(row.pay_url)
            pay_now = (
                f'<a class="btn btn--link pay-now-action" href="{pay_url}" hx-get="{pay_url}" '
                f'hx-target="#side-pane" hx-swap="innerHTML" hx-disabled-elt="this">{pay}</a>'
            )
        html.append(
            f'<tr><th scope="row"><a class="nowrap" href="{esc(row.detail_url)}">{esc(row.number)}</a></th>'
            f'<td class="nowrap">{esc(row.issued_on)}</td><td>{period}</td><td>{esc(row.transaction_type)}</td>'
            f'<td class="num">{esc(row.total)}</td><td class="num">{esc(row.amount_due)}</td>'
            f'<td class="nowrap">{esc(row.due_on)}</td><td>{esc(row.status_cell)}{pay_now}</td>'
            f'<td class="nowrap"><a href="{esc(row.pdf_url)}" download aria-label="{esc(row.pdf_label)}">'
            f"{download_icon}{pdf_text}</a></td></tr>\n"
        )
    return mark_safe("".join(html))  # noqa: S308 - only this module's literals and esc() output are joined
