"""Billing support requests: opened from the billing pages, answered from the support console."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Role
from audit.models import AuditEvent
from payments.models import PaymentAttempt
from subscriptions.models import Subscription
from support.services import support_staff_group
from support_requests.models import SupportRequest, SupportRequestMessage
from support_requests.services import support_staff_grant_reply
from tests.factories import UserFactory
from tests.pages_helpers import account_with_subscriptions, outsider

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


class _CommitNow:
    """Mails leave on commit; these tests run in one rolled-back transaction, so commit means now."""

    atomic = staticmethod(transaction.atomic)

    @staticmethod
    def on_commit(func, using=None, robust=False):
        func()


@pytest.fixture(autouse=True)
def _mail_at_once(monkeypatch):
    monkeypatch.setattr("notifications.services.transaction", _CommitNow)


@pytest.fixture
def world():
    account, users = account_with_subscriptions(2, past_due=1)
    users["invoice_manager"] = Membership.objects.create(
        account=account, user=UserFactory(), role=Role.INVOICE_MANAGER
    ).user
    return account, users


@pytest.fixture
def agent():
    user = UserFactory(email="agent@billing.example", is_staff=True)
    support_staff_grant_reply()
    user.groups.add(support_staff_group())
    return user


def _new_url(account, query=""):
    return reverse("support_requests:new", kwargs={"account_id": account.pk}) + query


def _open(
    client, account, query="", subject="Paid but still disabled", body="We paid yesterday.", key=None, **kw
):
    data = {"form_key": key or str(uuid.uuid4()), "subject": subject, "body": body}
    for part in query.lstrip("?").split("&"):
        if "=" in part:
            k, v = part.split("=", 1)
            data[k] = v
    return client.post(_new_url(account), data, **kw)


def _request(account, user, *, about="account", subject="Help", waiting_since=None, **kw) -> SupportRequest:
    request = SupportRequest.objects.create(
        account=account,
        opened_by=user,
        about=about,
        subject=subject,
        form_key=f"{account.pk}:{uuid.uuid4()}",
        waiting_since=waiting_since or timezone.now(),
        **kw,
    )
    SupportRequestMessage.objects.create(
        request=request, author=user, body="Question", form_key=f"{request.pk}:q"
    )
    return request


# -- Customers ------------------------------------------------------------------------------------------


def test_pane_from_an_invoice_is_prefilled_and_creates_one_request_per_form(client, world):
    account, users = world
    invoice = account.invoices.order_by("pk").first()
    client.force_login(users["admin"])
    page = client.get(_new_url(account, f"?invoice={invoice.number}"), headers=HTMX)
    body = page.content.decode()
    assert 'role="dialog"' in body
    assert "<html" not in body
    assert invoice.number in body
    assert f"Question about invoice {invoice.number}" in body
    key = str(uuid.uuid4())
    first = _open(client, account, f"?invoice={invoice.number}", key=key)
    second = _open(client, account, f"?invoice={invoice.number}", key=key)
    assert first.status_code == second.status_code == 302
    request = SupportRequest.objects.get()
    assert (
        first["Location"]
        == second["Location"]
        == reverse("support_requests:detail", kwargs={"account_id": account.pk, "request_id": request.pk})
    )
    assert request.about == "invoice"
    assert request.invoice == invoice
    assert request.status == "open"
    assert request.waiting_since is not None
    assert request.messages.count() == 1
    assert AuditEvent.objects.filter(action="support_request.opened").count() == 1


def test_pane_from_a_payment_names_its_reference(client, world):
    account, users = world
    attempt = PaymentAttempt.objects.create(
        account=account,
        amount_minor=1000,
        currency="EUR",
        idempotency_key=f"k-{uuid.uuid4()}",
        source=PaymentAttempt.Source.PAY_NOW,
        payment_method=account.payment_methods.first(),
    )
    client.force_login(users["owner"])
    body = client.get(_new_url(account, f"?payment={attempt.pk}")).content.decode()
    assert attempt.reference in body
    _open(client, account, f"?payment={attempt.pk}")
    assert SupportRequest.objects.get().payment_attempt == attempt


def test_htmx_submit_redirects_to_the_new_request(client, world):
    account, users = world
    client.force_login(users["owner"])
    response = _open(client, account, headers=HTMX)
    assert response.status_code == 204
    assert response["HX-Redirect"].endswith(f"/support/requests/{SupportRequest.objects.get().pk}/")


def test_bad_input_stays_in_the_pane_with_what_was_typed(client, world):
    account, users = world
    client.force_login(users["owner"])
    response = _open(client, account, subject="Kept subject", body="   ")
    body = response.content.decode()
    assert response.status_code == 200
    assert "Describe the problem or question." in body
    assert 'value="Kept subject"' in body
    response = _open(client, account, subject="x" * 200, body="Kept body")
    body = response.content.decode()
    assert "Keep the subject under 120 characters" in body
    assert "Kept body" in body
    assert not SupportRequest.objects.exists()


@pytest.mark.parametrize(
    "query",
    ["?invoice=NOPE", "?invoice=INV%00", "?payment=999999", "?payment=%C2%B2", "?subscription=999999"],
)
def test_unknown_or_foreign_objects_are_404(client, world, query):
    account, users = world
    client.force_login(users["owner"])
    # A NUL byte is refused before any view runs (billing_portal.errors: 400); the rest are unknown ids.
    expected = 400 if "%00" in query else 404
    assert client.get(_new_url(account, query)).status_code == expected


def test_another_accounts_invoice_and_request_are_404(client, world):
    account, users = world
    other, other_users = account_with_subscriptions(1)
    foreign_invoice = other.invoices.get()
    foreign_request = _request(other, other_users["owner"])
    client.force_login(users["owner"])
    assert client.get(_new_url(account, f"?invoice={foreign_invoice.number}")).status_code == 404
    url = reverse(
        "support_requests:detail", kwargs={"account_id": account.pk, "request_id": foreign_request.pk}
    )
    assert client.get(url).status_code == 404
    client.force_login(outsider())
    url = reverse(
        "support_requests:detail", kwargs={"account_id": other.pk, "request_id": foreign_request.pk}
    )
    assert client.get(url).status_code == 404


def test_readers_see_requests_but_do_not_open_or_reply(client, world):
    account, users = world
    request = _request(account, users["owner"])
    client.force_login(users["reader"])
    listing = client.get(reverse("support_requests:list", kwargs={"account_id": account.pk})).content.decode()
    assert request.reference in listing
    assert "Create a support request" not in listing
    assert _open(client, account).status_code == 403
    url = reverse("support_requests:detail", kwargs={"account_id": account.pk, "request_id": request.pk})
    assert client.post(url, {"form_key": str(uuid.uuid4()), "body": "hi"}).status_code == 403
    assert SupportRequest.objects.count() == 1


def test_invoice_managers_ask_about_invoices_but_not_subscriptions(client, world):
    account, users = world
    sub = Subscription.objects.filter(account=account).first()
    about_sub = _request(
        account, users["owner"], about="subscription", subscription=sub, subject="Sub question"
    )
    client.force_login(users["invoice_manager"])
    assert client.get(_new_url(account, f"?subscription={sub.pk}")).status_code == 403
    listing = client.get(reverse("support_requests:list", kwargs={"account_id": account.pk})).content.decode()
    assert "Sub question" not in listing
    url = reverse("support_requests:detail", kwargs={"account_id": account.pk, "request_id": about_sub.pk})
    assert client.get(url).status_code == 404
    invoice = account.invoices.first()
    assert _open(client, account, f"?invoice={invoice.number}").status_code == 302


def test_customer_reply_puts_the_request_back_in_the_queue(client, world):
    account, users = world
    request = _request(account, users["owner"])
    SupportRequest.objects.filter(pk=request.pk).update(
        status="closed", closed_at=timezone.now(), waiting_since=None
    )
    client.force_login(users["admin"])
    url = reverse("support_requests:detail", kwargs={"account_id": account.pk, "request_id": request.pk})
    key = str(uuid.uuid4())
    assert client.post(url, {"form_key": key, "body": "Still broken"}).status_code == 302
    assert client.post(url, {"form_key": key, "body": "Still broken"}).status_code == 302
    request.refresh_from_db()
    assert request.status == "open"
    assert request.closed_at is None
    assert request.waiting_since is not None
    assert request.messages.count() == 2
    body = client.post(url, {"form_key": str(uuid.uuid4()), "body": ""}).content.decode()
    assert "Write your reply." in body


# -- Support staff -------------------------------------------------------------------------------------


def test_queue_is_for_support_staff_only(client, world, agent):
    _account, users = world
    client.force_login(users["owner"])
    assert client.get(reverse("support_queue:queue")).status_code == 404
    client.force_login(agent)
    assert client.get(reverse("support_queue:queue")).status_code == 200


def test_queue_sorts_oldest_waiting_first_and_newest_first(client, world, agent):
    account, users = world
    now = timezone.now()
    old = _request(account, users["owner"], subject="Old one", waiting_since=now - dt.timedelta(days=3))
    _request(account, users["owner"], subject="New one", waiting_since=now - dt.timedelta(hours=1))
    SupportRequest.objects.filter(pk=old.pk).update(created_at=now - dt.timedelta(days=3))
    answered = _request(account, users["owner"], subject="Answered one")
    SupportRequest.objects.filter(pk=answered.pk).update(status="answered", waiting_since=None)
    client.force_login(agent)
    waiting = client.get(reverse("support_queue:queue")).content.decode()
    assert waiting.index("Old one") < waiting.index("New one")
    assert "Answered one" not in waiting
    assert reverse("support:account", args=[account.pk]) in waiting
    newest = client.get(reverse("support_queue:queue") + "?sort=newest").content.decode()
    assert newest.index("Answered one") < newest.index("New one") < newest.index("Old one")


def test_support_replies_mails_the_customer_and_closes(client, world, agent):
    account, users = world
    account.language = "nl"
    account.save(update_fields=["language"])
    request = _request(account, users["admin"], subject="Dubbel betaald")
    client.force_login(agent)
    url = reverse("support_queue:detail", args=[request.pk])
    key = str(uuid.uuid4())
    assert client.post(url, {"form_key": key, "body": "We refunded it."}).status_code == 302
    assert client.post(url, {"form_key": key, "body": "We refunded it."}).status_code == 302
    request.refresh_from_db()
    assert request.status == "answered"
    assert request.waiting_since is None
    assert [m.to for m in mail.outbox] == [[users["admin"].email]]
    assert "ondersteuning heeft uw aanvraag" in mail.outbox[0].body
    assert "We refunded it." in mail.outbox[0].body
    assert client.post(url, {"form_key": str(uuid.uuid4()), "body": "", "close": "on"}).status_code == 302
    request.refresh_from_db()
    assert request.status == "closed"
    assert request.closed_at is not None
    actions = list(
        AuditEvent.objects.filter(action__startswith="support_request.").values_list("action", flat=True)
    )
    assert sorted(actions) == ["support_request.closed", "support_request.replied"]
    client.get(url)
    assert AuditEvent.objects.filter(action="support_request.viewed", actor=agent).count() == 1
    # The customer sees the reply and the status.
    client.force_login(users["reader"])
    page = client.get(
        reverse("support_requests:detail", kwargs={"account_id": account.pk, "request_id": request.pk})
    )
    assert "We refunded it." in page.content.decode()
    assert "Gesloten" in page.content.decode()


def test_replying_needs_its_own_permission(client, world):
    account, users = world
    request = _request(account, users["owner"])
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_support_console"))
    client.force_login(viewer)
    url = reverse("support_queue:detail", args=[request.pk])
    page = client.get(url).content.decode()
    assert "Replying needs the permission" in page
    assert client.post(url, {"form_key": str(uuid.uuid4()), "body": "x"}).status_code == 403
    assert request.messages.count() == 1


def test_empty_staff_reply_is_a_message_in_the_page(client, world, agent):
    account, users = world
    request = _request(account, users["owner"])
    client.force_login(agent)
    body = client.post(
        reverse("support_queue:detail", args=[request.pk]), {"form_key": str(uuid.uuid4())}
    ).content
    assert "Write a reply, or close the request." in body.decode()


# -- Query counts -------------------------------------------------------------------------------------------


def _count(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_customer_pages_query_count_is_flat_from_1_to_200_requests(client):
    counts: dict[str, list[int]] = {"list": [], "detail": [], "new": []}
    for n in (1, 200):
        account, users = account_with_subscriptions(1)
        first = None
        for i in range(n):
            request = _request(account, users["owner"], about="invoice" if i % 2 else "account")
            first = first or request
            if i < 30 and n > 1:
                SupportRequestMessage.objects.create(
                    request=first, author=users["owner"], body=f"more {i}", form_key=f"{first.pk}:{i}"
                )
        client.force_login(users["owner"])
        counts["list"].append(
            _count(client, reverse("support_requests:list", kwargs={"account_id": account.pk}))
        )
        detail = reverse("support_requests:detail", kwargs={"account_id": account.pk, "request_id": first.pk})
        counts["detail"].append(_count(client, detail))
        counts["new"].append(_count(client, _new_url(account)))
    for name, (small, large) in counts.items():
        assert small == large, (name, small, large)


def test_queue_query_count_is_flat_from_1_to_200_requests(client, agent):
    counts = []
    for n in (1, 200):
        SupportRequest.objects.all().delete()
        account, users = account_with_subscriptions(1)
        for _ in range(n):
            _request(account, users["owner"])
        client.force_login(agent)
        counts.append(_count(client, reverse("support_queue:queue")))
    assert counts[0] == counts[1]


@pytest.mark.parametrize("referer_path", ["//evil.example/x", "/\\evil.example/x"])
def test_cancel_link_never_points_to_another_site(client, world, referer_path):
    # A Referer of "http://testserver//evil.example/x" would make Cancel a protocol-relative link elsewhere.
    account, users = world
    client.force_login(users["admin"])
    page = client.get(_new_url(account), HTTP_REFERER="http://testserver" + referer_path)
    body = page.content.decode()
    assert page.status_code == 200
    assert "evil.example" not in body
