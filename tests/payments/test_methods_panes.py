"""Payment methods: add a card in a pane; edit a card's expiry, its owner only."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from payments.models import PaymentMethod

pytestmark = pytest.mark.django_db


def test_add_a_card_from_the_payment_methods_page(client, contoso):
    client.force_login(contoso.finance)
    page = client.get(reverse("payments:methods", args=[contoso.account.pk])).content.decode()
    assert "Add a payment method" in page
    url = reverse("payments:method_add", args=[contoso.account.pk])
    response = client.post(
        url,
        {"number": "4012 8888 8888 1881", "exp_month": "7", "exp_year": "2030", "cvc": "123"},
        headers={"HX-Request": "true"},
    )
    assert "closePane" in response["HX-Trigger"]
    assert "Visa ending 1881 was added" in response.content.decode()
    card = PaymentMethod.objects.get(account=contoso.account, last4="1881")
    assert card.owner == contoso.finance
    assert AuditEvent.objects.filter(action="payment_method.added").exists()


def test_add_card_with_bad_input_keeps_the_pane_with_messages(client, contoso):
    client.force_login(contoso.finance)
    url = reverse("payments:method_add", args=[contoso.account.pk])
    body = client.post(
        url, {"number": "1234", "exp_month": "13", "exp_year": "2030", "cvc": "1"}
    ).content.decode()
    assert "1 to 12" in body
    assert PaymentMethod.objects.filter(account=contoso.account).count() == 2


def test_only_the_cards_owner_may_change_its_expiry(client, contoso):
    """Any owner or admin edits name and address; the expiry date only the admin who added the card."""
    edit = reverse("payments:method_edit", args=[contoso.account.pk, contoso.visa.pk])
    client.force_login(contoso.finance)
    page = client.get(edit).content.decode()
    assert 'name="exp_month"' not in page
    assert "Only Megan" in page or "who added this card" in page
    data = {"holder_name": "Finance Team", "exp_month": "1", "exp_year": "2031"}
    assert client.post(edit, data).status_code == 303
    visa = PaymentMethod.objects.get(pk=contoso.visa.pk)
    assert (visa.holder_name, visa.exp_year) == ("Finance Team", 2030)  # the expiry did not move
    client.force_login(contoso.admin)
    assert 'name="exp_month"' in client.get(edit).content.decode()
    response = client.post(edit, {"holder_name": "Megan Bowen", "exp_month": "1", "exp_year": "2031"})
    assert response.status_code == 303
    assert PaymentMethod.objects.get(pk=contoso.visa.pk).exp_year == 2031


def test_readers_cannot_add_cards(client, contoso):
    client.force_login(contoso.reader)
    assert (
        "Add a payment method"
        not in client.get(reverse("payments:methods", args=[contoso.account.pk])).content.decode()
    )
    assert client.get(reverse("payments:method_add", args=[contoso.account.pk])).status_code == 403
