"""Billing accounts, roles, invitations: who may do what, one owner always, audited and mailed."""

from __future__ import annotations

import re

import pytest
import time_machine
from django.core import mail
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Invitation, Membership, Role, User
from accounts.services import invitation_token
from audit.models import AuditEvent
from notifications.models import Notice
from tests.factories import BillingAccountFactory, MembershipFactory, UserFactory
from tests.pages_helpers import account_with_subscriptions, outsider

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


class _CommitNow:
    """notifications.services' view of django.db.transaction, with on_commit run at once: these tests run
    inside one rolled-back transaction, where mails queued "after commit" would never leave."""

    atomic = staticmethod(transaction.atomic)

    @staticmethod
    def on_commit(func, using=None, robust=False):
        func()


@pytest.fixture(autouse=True)
def _mail_at_once(monkeypatch):
    monkeypatch.setattr("notifications.services.transaction", _CommitNow)


@pytest.fixture
def world():
    account, users = account_with_subscriptions(1)
    account.tax_id = "IE6388047V"
    account.country = "IE"
    account.save(update_fields=["tax_id", "country"])
    return account, users


def _roles(account) -> str:
    return reverse("accounts:roles", kwargs={"account_id": account.pk})


def _member(account, role) -> Membership:
    return Membership.objects.select_related("user").get(account=account, role=role)


# -- Billing accounts page ------------------------------------------------------------------------------


def test_billing_accounts_lists_every_account_with_my_role_and_country_name(client, world):
    account, users = world
    other = MembershipFactory(user=users["reader"], role=Role.INVOICE_MANAGER, account__name="Zeta BV")
    client.force_login(users["reader"])
    body = client.get(
        reverse("accounts:billing_accounts", kwargs={"account_id": account.pk})
    ).content.decode()
    assert "Billing accounts" in body
    assert account.name in body
    assert "Zeta BV" in body
    assert "Billing reader" in body
    assert "Invoice manager" in body
    assert "Ireland" in body  # the country's name, not its ISO code
    assert ">IE<" not in body
    assert "IE6388047V" in body
    assert f'href="/a/{other.account_id}/"' in body
    assert f"{account.pk:08d}" in body


def test_billing_accounts_in_dutch_names_the_country_in_dutch(client, world):
    account, users = world
    account.language = "nl"
    account.save(update_fields=["language"])
    client.force_login(users["owner"])
    body = client.get(
        reverse("accounts:billing_accounts", kwargs={"account_id": account.pk})
    ).content.decode()
    assert "Factureringsaccounts" in body
    assert "Ierland" in body


def test_billing_accounts_query_count_is_flat(client, django_assert_num_queries):
    few_account, few_users = account_with_subscriptions(1)
    many_account, many_users = account_with_subscriptions(1)
    for _ in range(60):
        MembershipFactory(user=many_users["reader"], role=Role.READER)
    counts = []
    for account, user in ((few_account, few_users["reader"]), (many_account, many_users["reader"])):
        client.force_login(user)
        with CaptureQueriesContext(connection) as queries:
            assert (
                client.get(
                    reverse("accounts:billing_accounts", kwargs={"account_id": account.pk})
                ).status_code
                == 200
            )
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_roles_page_query_count_is_flat_from_1_to_200_members(client):
    small, small_users = account_with_subscriptions(1)
    large, large_users = account_with_subscriptions(1)
    for i in range(200):
        MembershipFactory(account=large, role=Role.READER if i % 2 else Role.INVOICE_MANAGER)
        Invitation.objects.create(account=large, email=f"inv{i}@example.test", role=Role.READER)
    counts = []
    for account, user in ((small, small_users["owner"]), (large, large_users["owner"])):
        client.force_login(user)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(_roles(account)).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_owner_sees_role_actions_others_only_the_list(client, world):
    account, users = world
    client.force_login(users["owner"])
    body = client.get(_roles(account)).content.decode()
    assert "Invite a person" in body
    assert "Assign role" in body
    assert "Remove" in body
    client.force_login(users["admin"])
    body = client.get(_roles(account)).content.decode()
    assert users["reader"].email in body
    assert "Invite a person" not in body
    assert "Assign role</a>" not in body
    assert "Only the billing account owner can assign roles" in body


# -- Assigning roles ----------------------------------------------------------------------------------------


def test_owner_assigns_a_role_audited_and_mailed_to_the_owner(client, world):
    account, users = world
    reader = _member(account, Role.READER)
    client.force_login(users["owner"])
    url = reverse("accounts:role_change", kwargs={"account_id": account.pk, "member_id": reader.pk})
    response = client.post(url, {"role": Role.INVOICE_MANAGER})
    assert response.status_code == 302
    reader.refresh_from_db()
    assert reader.role == Role.INVOICE_MANAGER
    event = AuditEvent.objects.get(action="account.role_changed")
    assert event.actor == users["owner"]
    assert event.data == {"user": reader.user_id, "before": "reader", "after": "invoice_manager"}
    notice = Notice.objects.get(kind="roles_changed")
    assert notice.recipient == users["owner"].email
    assert [m.to for m in mail.outbox] == [[users["owner"].email]]
    assert "Billing reader → Invoice manager" in mail.outbox[0].body


@pytest.mark.parametrize("who", ["admin", "reader"])
def test_nobody_but_the_owner_changes_roles(client, world, who):
    account, users = world
    reader = _member(account, Role.READER)
    client.force_login(users[who])
    url = reverse("accounts:role_change", kwargs={"account_id": account.pk, "member_id": reader.pk})
    assert client.post(url, {"role": Role.OWNER}).status_code == 403
    assert (
        client.post(
            reverse("accounts:member_remove", kwargs={"account_id": account.pk, "member_id": reader.pk})
        ).status_code
        == 403
    )
    assert (
        client.post(
            reverse("accounts:invite", kwargs={"account_id": account.pk}),
            {"email": "x@example.test", "role": "reader"},
        ).status_code
        == 403
    )
    assert Membership.objects.get(pk=reader.pk).role == Role.READER
    assert not AuditEvent.objects.filter(action__startswith="account.").exists()
    assert not Invitation.objects.exists()


def test_another_accounts_member_id_is_404(client, world):
    account, users = world
    foreign = MembershipFactory(role=Role.READER)
    client.force_login(users["owner"])
    for name in ("accounts:role_change", "accounts:member_remove"):
        url = reverse(name, kwargs={"account_id": account.pk, "member_id": foreign.pk})
        assert client.get(url).status_code == 404
        assert client.post(url, {"role": Role.ADMIN}).status_code == 404
    foreign.refresh_from_db()
    assert foreign.role == Role.READER


def test_a_bad_role_is_a_message_in_the_pane_and_changes_nothing(client, world):
    account, users = world
    reader = _member(account, Role.READER)
    client.force_login(users["owner"])
    url = reverse("accounts:role_change", kwargs={"account_id": account.pk, "member_id": reader.pk})
    response = client.post(url, {"role": "superuser"}, headers=HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Choose one of the roles in the list." in body
    assert 'class="pane' in body
    assert "<html" not in body
    reader.refresh_from_db()
    assert reader.role == Role.READER


def test_handing_over_ownership_leaves_exactly_one_owner(client, world):
    account, users = world
    admin = _member(account, Role.ADMIN)
    client.force_login(users["owner"])
    url = reverse("accounts:role_change", kwargs={"account_id": account.pk, "member_id": admin.pk})
    response = client.post(url, {"role": Role.OWNER}, headers=HTMX)
    # The former owner's page loses its commands and actions: htmx reloads it.
    assert response.status_code == 204
    assert response["HX-Redirect"] == _roles(account)
    owners = Membership.objects.filter(account=account, role=Role.OWNER)
    assert [m.user for m in owners] == [users["admin"]]
    assert Membership.objects.get(account=account, user=users["owner"]).role == Role.ADMIN
    assert AuditEvent.objects.filter(action="account.ownership_transferred").count() == 1
    assert sorted(m.to[0] for m in mail.outbox) == sorted([users["owner"].email, users["admin"].email])
    # The former owner is an admin now: roles are no longer theirs to change.
    assert client.post(url, {"role": Role.READER}).status_code == 403


def test_the_owner_cannot_demote_themselves_without_handing_over(client, world):
    account, users = world
    owner = _member(account, Role.OWNER)
    client.force_login(users["owner"])
    url = reverse("accounts:role_change", kwargs={"account_id": account.pk, "member_id": owner.pk})
    body = client.post(url, {"role": Role.READER}).content.decode()
    assert "Make another member the owner first" in body
    owner.refresh_from_db()
    assert owner.role == Role.OWNER


def test_owner_removes_a_member_but_never_the_owner(client, world):
    account, users = world
    reader = _member(account, Role.READER)
    owner = _member(account, Role.OWNER)
    client.force_login(users["owner"])
    url = reverse("accounts:member_remove", kwargs={"account_id": account.pk, "member_id": reader.pk})
    assert client.get(url).status_code == 200
    assert client.post(url).status_code == 302
    assert not Membership.objects.filter(pk=reader.pk).exists()
    assert AuditEvent.objects.get(action="account.member_removed").data["email"] == users["reader"].email
    # The removed reader now gets 404 like any outsider.
    client.force_login(users["reader"])
    assert client.get(reverse("accounts:home", kwargs={"account_id": account.pk})).status_code == 404
    client.force_login(users["owner"])
    url = reverse("accounts:member_remove", kwargs={"account_id": account.pk, "member_id": owner.pk})
    assert "cannot be removed" in client.post(url, follow=True).content.decode()
    assert Membership.objects.filter(pk=owner.pk).exists()


# -- Invitations --------------------------------------------------------------------------------------------


def _invite(client, account, email="new.person@example.test", role="invoice_manager", **kw):
    return client.post(
        reverse("accounts:invite", kwargs={"account_id": account.pk}), {"email": email, "role": role}, **kw
    )


def _link_from_mail() -> str:
    """The path of the invitation link in the last invitation mail."""
    invite = [m for m in mail.outbox if "/invitations/" in m.body][-1]
    match = re.search(r"https?://[^/\s]+(/invitations/\S+/)", invite.body)
    assert match, invite.body
    return match.group(1)


def test_a_double_submitted_invite_makes_one_invitation_and_one_mail(client, world):
    account, users = world
    client.force_login(users["owner"])
    assert _invite(client, account).status_code == 302
    assert _invite(client, account, email=" New.Person@example.test ").status_code == 302
    assert Invitation.objects.filter(account=account).count() == 1
    invites = [m for m in mail.outbox if m.to == ["new.person@example.test"]]
    assert len(invites) == 1
    assert "invited you to the billing account" in invites[0].body
    assert AuditEvent.objects.filter(action="account.member_invited").count() == 1


def test_invitation_mail_is_dutch_for_a_dutch_account(client, world):
    account, users = world
    account.language = "nl"
    account.save(update_fields=["language"])
    client.force_login(users["owner"])
    _invite(client, account)
    invite = next(m for m in mail.outbox if m.to == ["new.person@example.test"])
    assert "heeft u uitgenodigd" in invite.body
    assert "uitgenodigd" in invite.subject


def test_bad_invite_input_is_shown_in_the_pane_keeping_what_was_typed(client, world):
    account, users = world
    client.force_login(users["owner"])
    body = _invite(client, account, email="not-an-address", headers=HTMX).content.decode()
    assert "Enter a valid e-mail address" in body
    assert 'value="not-an-address"' in body
    body = _invite(client, account, email=users["reader"].email, headers=HTMX).content.decode()
    assert "is already a member" in body
    body = _invite(client, account, role="owner", headers=HTMX).content.decode()
    assert "Choose one of the roles in the list." in body
    assert not Invitation.objects.exists()


def test_new_person_sets_a_password_and_lands_in_the_account(client, world):
    account, users = world
    client.force_login(users["owner"])
    _invite(client, account)
    link = _link_from_mail()
    client.logout()
    page = client.get(link)
    assert page.status_code == 200
    assert "Set password and join" in page.content.decode()
    short = client.post(link, {"full_name": "Nia Person", "password": "short", "password_again": "short"})
    assert short.status_code == 200
    assert 'value="Nia Person"' in short.content.decode()
    assert not User.objects.filter(email="new.person@example.test").exists()
    response = client.post(
        link,
        {"full_name": "Nia Person", "password": "a-long-pass-2026!", "password_again": "a-long-pass-2026!"},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:home", kwargs={"account_id": account.pk})
    member = Membership.objects.get(account=account, user__email="new.person@example.test")
    assert member.role == Role.INVOICE_MANAGER
    assert client.get(response["Location"]).status_code == 200  # signed in
    # The link works once.
    client.logout()
    again = client.get(link)
    assert again.status_code == 410
    assert "has been used already" in again.content.decode()
    assert AuditEvent.objects.filter(action="account.invitation_accepted").count() == 1


def test_existing_user_signs_in_with_the_invited_address_to_accept(client, world):
    account, users = world
    existing = UserFactory(email="known@example.test")
    client.force_login(users["owner"])
    _invite(client, account, email="known@example.test", role="reader")
    link = _link_from_mail()
    client.logout()
    assert "Sign in to accept" in client.get(link).content.decode()
    stranger = UserFactory()
    client.force_login(stranger)
    assert "signed in with another address" in client.get(link).content.decode()
    assert "Sign in with that address" in client.post(link).content.decode()
    client.force_login(existing)
    response = client.post(link)
    assert response.status_code == 302
    assert Membership.objects.get(account=account, user=existing).role == Role.READER


def test_expired_or_altered_invitation_links_are_refused(client, world, settings):
    account, users = world
    client.force_login(users["owner"])
    _invite(client, account)
    link = _link_from_mail()
    client.logout()
    tampered = link.replace("/invitations/", "/invitations/x")
    assert "not valid" in client.get(tampered).content.decode()
    with _later(settings):
        response = client.get(link)
    assert response.status_code == 410
    assert "has expired" in response.content.decode()
    assert Invitation.objects.get().status == Invitation.Status.PENDING


def _later(settings):
    import datetime as dt

    from django.utils import timezone

    return time_machine.travel(timezone.now() + dt.timedelta(days=settings.INVITATION_MAX_AGE_DAYS, hours=1))


def test_invitation_token_names_invitation_and_address():
    account = BillingAccountFactory()
    invitation = Invitation.objects.create(account=account, email="a@example.test", role=Role.READER)
    other = Invitation.objects.create(account=account, email="b@example.test", role=Role.READER)
    assert invitation_token(invitation=invitation) != invitation_token(invitation=other)


def test_withdrawn_invitation_cannot_be_used(client, world):
    account, users = world
    client.force_login(users["owner"])
    _invite(client, account)
    link = _link_from_mail()
    invitation = Invitation.objects.get()
    url = reverse(
        "accounts:invitation_withdraw", kwargs={"account_id": account.pk, "invitation_id": invitation.pk}
    )
    assert client.post(url).status_code == 302
    client.logout()
    assert "withdrawn" in client.get(link).content.decode()


def test_outsider_cannot_withdraw_an_invitation(client, world):
    account, _users = world
    invitation = Invitation.objects.create(account=account, email="a@example.test", role=Role.READER)
    client.force_login(outsider())
    url = reverse(
        "accounts:invitation_withdraw", kwargs={"account_id": account.pk, "invitation_id": invitation.pk}
    )
    assert client.post(url).status_code == 404
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.PENDING


def test_panes_work_as_htmx_fragments_and_as_pages(client, world):
    account, users = world
    client.force_login(users["owner"])
    url = reverse("accounts:invite", kwargs={"account_id": account.pk})
    full = client.get(url).content.decode()
    fragment = client.get(url, headers=HTMX).content.decode()
    assert "<html" in full
    assert 'id="leftnav"' in full
    assert "<html" not in fragment
    assert 'role="dialog"' in fragment
    response = _invite(client, account, headers=HTMX)
    assert "closePane" in response["HX-Trigger"]
    assert "new.person@example.test" in response.content.decode()


def test_inviting_again_after_the_link_expired_sends_a_new_link_that_works(client, world, settings):
    """The expired page says "ask the owner to invite you again": doing so must produce a working link."""
    account, users = world
    client.force_login(users["owner"])
    _invite(client, account)
    first = _link_from_mail()
    with _later(settings):
        _invite(client, account)
        second = _link_from_mail()
        assert second != first
        client.logout()
        assert client.get(second).status_code == 200
    assert Invitation.objects.filter(status=Invitation.Status.PENDING).count() == 1
    assert Invitation.objects.filter(status=Invitation.Status.REVOKED).count() == 1
