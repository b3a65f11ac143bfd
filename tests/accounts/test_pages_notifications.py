"""Billing notifications: see the address, change it (owners/admins), validated, audited."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from accounts.services import billing_account_update_notifications
from audit.models import AuditEvent
from tests.pages_helpers import account_with_subscriptions

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return account_with_subscriptions(1)


def _url(account) -> str:
    return reverse("accounts:notifications_edit", kwargs={"account_id": account.pk})


def _page(account) -> str:
    return reverse("accounts:notifications", kwargs={"account_id": account.pk})


def test_page_shows_the_address_mail_goes_to(client, world):
    account, users = world
    client.force_login(users["reader"])
    body = client.get(_page(account)).content.decode()
    assert account.notification_email in body
    assert "Only billing account owners and billing admins can change" in body
    assert "Edit notification settings" not in body


def test_owner_sees_the_edit_command(client, world):
    account, users = world
    client.force_login(users["owner"])
    body = client.get(_page(account)).content.decode()
    assert _url(account) in body
    assert 'hx-target="#side-pane"' in body


def test_edit_pane_is_a_fragment_for_htmx_and_a_page_without(client, world):
    account, users = world
    client.force_login(users["admin"])
    fragment = client.get(_url(account), HTTP_HX_REQUEST="true").content.decode()
    assert fragment.lstrip().startswith('<section class="pane pane--medium"')
    assert 'role="dialog"' in fragment
    assert "<html" not in fragment
    page = client.get(_url(account)).content.decode()
    assert "<html" in page
    assert 'class="pane pane--medium"' in page
    assert 'aria-level="1"' in page


def test_htmx_save_closes_the_pane_and_updates_the_page(client, world):
    account, users = world
    client.force_login(users["owner"])
    response = client.post(
        _url(account), {"email": "ap@newco.example", "language": "en"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert "closePane" in response["HX-Trigger"]
    body = response.content.decode()
    assert 'id="notification-settings"' in body
    assert 'hx-swap-oob="true"' in body
    assert "ap@newco.example" in body
    assert 'class="pane' not in body


def test_admin_changes_address_and_language_and_it_is_audited(client, world):
    account, users = world
    client.force_login(users["admin"])
    response = client.post(_url(account), {"email": "  ap@newco.example ", "language": "nl"}, follow=True)
    assert response.status_code == 200
    account.refresh_from_db()
    assert account.notification_email == "ap@newco.example"
    assert account.language == "nl"
    event = AuditEvent.objects.get(action="account.notifications_changed")
    assert event.actor == users["admin"]
    assert event.data["before"]["email"] != event.data["after"]["email"]
    assert "ap@newco.example" in response.content.decode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"email": "not-an-address", "language": "en"}, "Enter a valid e-mail address"),
        ({"email": "", "language": "en"}, "Enter the address billing mail should go to."),
        ({"email": "a@b.example", "language": "xx"}, "Select a valid choice"),
        ({"email": "x" * 250 + "@b.example", "language": "en"}, "at most 254"),
    ],
)
def test_bad_input_gets_a_message_and_changes_nothing(client, world, data, message):
    account, users = world
    before = (account.notification_email, account.language)
    client.force_login(users["owner"])
    response = client.post(_url(account), data)
    assert response.status_code == 200
    body = response.content.decode()
    assert message in body
    assert "Nothing was changed" in body
    assert 'aria-invalid="true"' in body
    account.refresh_from_db()
    assert (account.notification_email, account.language) == before
    assert not AuditEvent.objects.exists()


def test_service_refuses_readers_and_bad_addresses(world):
    account, users = world
    with pytest.raises(PermissionDenied):
        billing_account_update_notifications(
            account=account, actor=users["reader"], email="x@y.example", language="en"
        )
    with pytest.raises(ValidationError):
        billing_account_update_notifications(
            account=account, actor=users["owner"], email="nope", language="en"
        )
    account.refresh_from_db()
    assert account.notification_email != "x@y.example"


def test_unchanged_settings_write_no_audit_entry(world):
    account, users = world
    billing_account_update_notifications(
        account=account, actor=users["owner"], email=account.notification_email, language=account.language
    )
    assert not AuditEvent.objects.exists()
