"""Bills & payments → Billing profile, and Billing notifications → Edit recipients."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from accounts.models import BillingAccount
from accounts.services import (
    SettingsInvalid,
    billing_account_update_recipients,
    parse_recipients,
)
from audit.models import AuditEvent
from notifications.models import Notice
from notifications.services import notice_send
from tests.pages_helpers import account_with_subscriptions, outsider

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
PROFILE = {
    "address_line1": "Herengracht 1",
    "address_line2": "",
    "postal_code": "1015 BA",
    "city": "Amsterdam",
    "country": "NL",
    "po_number": "PO-2026-0042",
    "invoice_email_attachments": "on",
}


@pytest.fixture
def world():
    return account_with_subscriptions(2)


def _profile(account) -> str:
    return reverse("accounts:billing_profile", kwargs={"account_id": account.pk})


def _profile_edit(account) -> str:
    return reverse("accounts:billing_profile_edit", kwargs={"account_id": account.pk})


def _recipients(account) -> str:
    return reverse("accounts:recipients_edit", kwargs={"account_id": account.pk})


def test_profile_shows_currency_frequency_and_country_by_name(client, world):
    account, users = world
    client.force_login(users["reader"])
    body = client.get(_profile(account)).content.decode()
    for text in ("Billing profile", "EUR", "Monthly", "Netherlands", "1 Main Street"):
        assert text in body, text
    assert ">NL<" not in body
    assert "Edit billing profile" not in body
    assert "Only billing account owners and billing admins can change the billing profile." in body


def test_profile_reads_dutch_for_a_dutch_account(client, world):
    account, users = world
    BillingAccount.objects.filter(pk=account.pk).update(language="nl", country="BE")
    client.force_login(users["reader"])
    body = client.get(_profile(account)).content.decode()
    assert "Factureringsprofiel" in body
    assert "België" in body


def test_admin_edits_the_profile_in_a_pane_and_it_is_audited(client, world):
    account, users = world
    client.force_login(users["admin"])
    assert "Edit billing profile" in client.get(_profile(account)).content.decode()
    form = client.get(_profile_edit(account)).content.decode()
    assert 'value="NL" selected' in form
    response = client.post(_profile_edit(account), PROFILE, headers=HX)
    assert "closePane" in response["HX-Trigger"]
    assert "profileChanged" in response["HX-Trigger"]
    account.refresh_from_db()
    assert account.po_number == "PO-2026-0042"
    assert account.invoice_email_attachments is True
    assert account.address_line1 == "Herengracht 1"
    event = AuditEvent.objects.get(action="account.billing_profile_changed")
    assert set(event.data["changed"]) == {
        "address_line1",
        "postal_code",
        "po_number",
        "invoice_email_attachments",
    }
    # The same save again (a double submit) changes and audits nothing.
    client.post(_profile_edit(account), PROFILE)
    assert AuditEvent.objects.filter(action="account.billing_profile_changed").count() == 1


def test_profile_without_javascript_redirects_back_with_a_message(client, world):
    account, users = world
    client.force_login(users["owner"])
    response = client.post(_profile_edit(account), {**PROFILE, "invoice_email_attachments": ""})
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "The billing profile was saved." in page
    assert "PO-2026-0042" in page


def test_bad_profile_input_keeps_what_was_typed_and_changes_nothing(client, world):
    account, users = world
    client.force_login(users["admin"])
    body = client.post(
        _profile_edit(account), {**PROFILE, "city": "", "country": "ZZ", "po_number": "PO typed"}
    ).content.decode()
    assert "Enter the city." in body
    assert "Choose a country from the list." in body
    assert 'value="PO typed"' in body
    assert 'value="Herengracht 1"' in body
    account.refresh_from_db()
    assert account.po_number == ""
    assert not AuditEvent.objects.filter(action="account.billing_profile_changed").exists()


def test_readers_and_outsiders_cannot_edit_the_profile(client, world):
    account, users = world
    client.force_login(users["reader"])
    assert client.get(_profile_edit(account)).status_code == 403
    assert client.post(_profile_edit(account), PROFILE).status_code == 403
    client.force_login(outsider())
    assert client.get(_profile(account)).status_code == 404
    assert client.post(_profile_edit(account), PROFILE).status_code == 404


# --------------------------------------------------------------------------------- recipients


def test_parse_recipients_splits_lowercases_and_dedupes():
    good, bad = parse_recipients(
        "Ann@Contoso.example, ann@contoso.example;bob@contoso.example\nnot-an-address"
    )
    assert good == ["ann@contoso.example", "bob@contoso.example"]
    assert bad == ["not-an-address"]


def test_recipients_are_validated_limited_deduped_and_audited(world):
    account, users = world
    with pytest.raises(SettingsInvalid, match="not e-mail addresses"):
        billing_account_update_recipients(account=account, actor=users["admin"], raw="ann@x.example, nope")
    many = "\n".join(f"p{i}@x.example" for i in range(11))
    with pytest.raises(SettingsInvalid, match="at most 10"):
        billing_account_update_recipients(account=account, actor=users["admin"], raw=many)
    account.refresh_from_db()
    assert account.additional_recipients == []
    saved = billing_account_update_recipients(
        account=account,
        actor=users["admin"],
        raw=f"ann@x.example\nANN@x.example\n{account.notification_email}",
    )
    assert saved.additional_recipients == ["ann@x.example"]
    assert AuditEvent.objects.filter(action="account.recipients_changed").count() == 1
    with pytest.raises(PermissionDenied):
        billing_account_update_recipients(account=account, actor=users["reader"], raw="")


def test_edit_recipients_pane_shows_the_addresses_used(client, world):
    account, users = world
    client.force_login(users["admin"])
    page = client.get(reverse("accounts:notifications", kwargs={"account_id": account.pk})).content.decode()
    assert "Edit recipients" in page
    response = client.post(_recipients(account), {"recipients": "ann@x.example\nbob@x.example"}, headers=HX)
    assert "closePane" in response["HX-Trigger"]
    assert f"Billing mail goes to {account.notification_email}, ann@x.example, bob@x.example." in (
        response.content.decode()
    )
    page = client.get(reverse("accounts:notifications", kwargs={"account_id": account.pk})).content.decode()
    assert "ann@x.example" in page
    assert "sent to all of these addresses" in page


def test_bad_recipients_keep_what_was_typed(client, world):
    account, users = world
    client.force_login(users["admin"])
    body = client.post(_recipients(account), {"recipients": "ann@x.example\nnope"}).content.decode()
    assert "These are not e-mail addresses: nope" in body
    assert "ann@x.example\nnope" in body
    client.force_login(users["reader"])
    assert client.get(_recipients(account)).status_code == 403


def test_billing_mail_goes_to_the_notification_address_and_the_additional_recipients(world):
    account, users = world
    billing_account_update_recipients(
        account=account, actor=users["admin"], raw="ann@x.example bob@x.example"
    )
    account.refresh_from_db()
    notice_send(
        account=account,
        kind="payment_received",
        dedupe_key="payment_received:test",
        context={
            "reference": "PAY-1",
            "amount": "€1.00",
            "method": "Visa",
            "invoices": "X",
            "paid_on": "today",
        },
    )
    notice = Notice.objects.get(dedupe_key="payment_received:test")
    assert notice.additional_recipients == ["ann@x.example", "bob@x.example"]
    from notifications.services import notice_deliver

    notice_deliver(notice_id=notice.pk)
    assert mail.outbox[-1].to == [account.notification_email, "ann@x.example", "bob@x.example"]


def test_a_us_address_with_its_state_reads_the_us_way_on_the_profile(client, world):
    account, users = world
    client.force_login(users["admin"])
    us = {**PROFILE, "address_line1": "2732 Baker Blvd.", "postal_code": "97403", "city": "Eugene"}
    response = client.post(_profile_edit(account), {**us, "region": "OR", "country": "US"}, headers=HX)
    assert "closePane" in response["HX-Trigger"]
    account.refresh_from_db()
    assert account.region == "OR"
    assert "region" in AuditEvent.objects.get(action="account.billing_profile_changed").data["changed"]
    page = client.get(_profile(account)).content.decode()
    assert "Eugene, OR 97403" in page
    assert "United States" in page
    # A control character in the state is refused in the pane and changes nothing.
    bad = client.post(_profile_edit(account), {**us, "region": "O\x01R", "country": "US"}, headers=HX)
    assert "closePane" not in bad.get("HX-Trigger", "")
    account.refresh_from_db()
    assert account.region == "OR"
