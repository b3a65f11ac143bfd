"""The invoice manager pays (Pay now, Settle balance) but manages no cards."""

import uuid

import pytest
from django.urls import reverse

from accounts.models import Membership, Role
from payments.models import PaymentMethod
from subscriptions.models import Invoice
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(contoso):
    return Membership.objects.create(
        account=contoso.account, user=UserFactory(), role=Role.INVOICE_MANAGER
    ).user


def test_invoice_manager_pays_an_invoice_with_pay_now(client, contoso, manager):
    client.force_login(manager)
    url = reverse("payments:invoice_pay", args=[contoso.account.pk, contoso.invoices["teams"].number])
    response = client.post(url, {"form_key": str(uuid.uuid4()), "method": contoso.mastercard.pk})
    assert "Payment received" in response.content.decode()
    assert Invoice.objects.get(pk=contoso.invoices["teams"].pk).status == Invoice.Status.PAID


def test_invoice_manager_settles_the_balance(client, contoso, manager):
    client.force_login(manager)
    url = reverse("payments:settle", args=[contoso.account.pk, contoso.visa.pk])
    payload = {
        "form_key": str(uuid.uuid4()),
        "method": str(contoso.mastercard.pk),
        "shown_total_minor": "39050",
    }
    response = client.post(url, payload)
    assert "Payment received" in response.content.decode()
    assert not Invoice.objects.filter(account=contoso.account, status=Invoice.Status.PAST_DUE).exists()


def test_invoice_manager_cannot_add_or_edit_cards_outside_a_payment(client, contoso, manager):
    client.force_login(manager)
    card = PaymentMethod.objects.create(
        account=contoso.account,
        owner=manager,
        brand=contoso.mastercard.brand,
        last4="5556",
        exp_month=1,
        exp_year=2040,
        gateway=contoso.mastercard.gateway,
        gateway_token="tok_im_1",
    )
    add = reverse("payments:method_add", args=[contoso.account.pk])
    edit = reverse("payments:method_edit", args=[contoso.account.pk, card.pk])
    expiry = reverse("payments:settle_expiry", args=[contoso.account.pk, card.pk])
    assert client.get(add).status_code == 403
    assert (
        client.post(add, {"number": "4242424242424242", "exp_month": "1", "exp_year": "2040"}).status_code
        == 403
    )
    assert client.post(edit, {"exp_month": "2", "exp_year": "2041"}).status_code == 403
    assert client.post(expiry, {"exp_month": "2", "exp_year": "2041"}).status_code == 403
    card.refresh_from_db()
    assert (card.exp_month, card.exp_year) == (1, 2040)
    assert PaymentMethod.objects.filter(account=contoso.account).count() == 3
