"""Who may open which page: the role/tenant matrix over every customer URL, sign-in, sign-out, the root."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Membership, Role
from tests.factories import MembershipFactory, UserFactory
from tests.pages_helpers import account_with_subscriptions, outsider

pytestmark = pytest.mark.django_db

IM = "invoice_manager"
# Every customer URL (GET), and the member roles that get 403 there. Invoice managers see invoices and
# payment methods (and pay them) only: Your products, subscription timelines, notification settings and
# the member list are not theirs (docs/ARCHITECTURE.md, "Roles and invitations").
PAGES = [
    ("accounts:home", {}, set()),
    ("accounts:notifications", {}, {IM}),
    ("accounts:notifications_edit", {}, {"reader", IM}),
    ("accounts:billing_accounts", {}, set()),
    ("accounts:roles", {}, {IM}),
    ("accounts:invite", {}, {"admin", "reader", IM}),
    ("accounts:role_change", {"member_id": "member"}, {"admin", "reader", IM}),
    ("accounts:member_remove", {"member_id": "member"}, {"admin", "reader", IM}),
    ("notifications:sent", {}, {IM}),
    ("subscriptions:products", {}, {IM}),
    ("dunning:timeline", {"subscription_id": "subscription"}, {IM}),
    ("subscriptions:invoices", {}, set()),
    ("subscriptions:invoice_detail", {"number": "number"}, set()),
    ("payments:methods", {}, set()),
    ("payments:method_add", {}, {"reader", IM}),
    ("payments:method_edit", {"method_id": "own_card"}, {"reader", IM}),
    ("payments:settle", {"failed_method_id": "visa"}, set()),
    ("payments:invoice_pay", {"number": "number"}, set()),
    ("support_requests:list", {}, set()),
    ("support_requests:new", {}, {"reader"}),
    ("support_requests:detail", {"request_id": "request"}, set()),
]
MEMBERS = ["owner", "admin", "reader", IM]


@pytest.fixture
def world():
    from payments.models import PaymentMethod
    from support_requests.models import SupportRequest

    account, users = account_with_subscriptions(3, past_due=2)
    users[IM] = Membership.objects.create(account=account, user=UserFactory(), role=Role.INVOICE_MANAGER).user
    invoice = account.invoices.order_by("pk").first()
    reader = account.memberships.get(role=Role.READER)
    visa = PaymentMethod.objects.get(account=account, last4="0341")
    request = SupportRequest.objects.create(
        account=account, opened_by=users["admin"], subject="Help", form_key=f"{account.pk}:matrix"
    )
    ids = {
        "number": invoice.number,
        "member": reader.pk,
        "subscription": invoice.subscription_id,
        "visa": visa.pk,
        "request": request.pk,
        # Each user may open the edit pane of a card they added; 403 comes from the role, not the owner check.
        "own_card": None,
    }
    return account, users, ids


def _url(name: str, extra: dict, account_id: int, ids: dict, user=None) -> str:
    from payments.models import PaymentMethod
    from tests.factories import PaymentMethodFactory

    kwargs = {"account_id": account_id}
    for key, ref in extra.items():
        if ref == "own_card":
            found = PaymentMethod.objects.filter(account_id=account_id, owner=user).first() if user else None
            kwargs[key] = (
                found.pk
                if found
                else PaymentMethodFactory(account_id=account_id, owner=user, last4="1111").pk
            )
        else:
            kwargs[key] = ids[ref]
    return reverse(name, kwargs=kwargs)


@pytest.mark.parametrize(("name", "extra", "forbidden"), PAGES)
@pytest.mark.parametrize("who", [*MEMBERS, "outsider", "anonymous"])
def test_every_page_answers_members_and_hides_from_everyone_else(client, world, name, extra, forbidden, who):
    account, users, ids = world
    user = users.get(who)
    url = _url(name, extra, account.pk, ids, user)
    if who in MEMBERS:
        client.force_login(users[who])
    elif who == "outsider":
        client.force_login(outsider())
    response = client.get(url)
    if who in MEMBERS:
        assert response.status_code == (403 if who in forbidden else 200), (who, url)
    elif who == "outsider":
        assert response.status_code == 404
    else:
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("accounts:signin"))


@pytest.mark.parametrize(("name", "extra", "forbidden"), PAGES)
def test_another_tenants_ids_are_404(client, world, name, extra, forbidden):
    """The owner of another account asks for this account's objects through their own account id: 404."""
    account, users, ids = world
    if not extra:
        pytest.skip("no object id in this URL")
    other_account, other_users = account_with_subscriptions(1)
    client.force_login(other_users["owner"])
    url = _url(name, extra, account.pk, ids, users["owner"])
    url = url.replace(f"/a/{account.pk}/", f"/a/{other_account.pk}/", 1)
    assert client.get(url).status_code == 404


def test_invoice_manager_sees_no_subscription_navigation(client, world):
    account, users, _ = world
    client.force_login(users[IM])
    body = client.get(reverse("accounts:home", kwargs={"account_id": account.pk})).content.decode()
    assert reverse("subscriptions:products", kwargs={"account_id": account.pk}) not in body
    assert reverse("accounts:notifications", kwargs={"account_id": account.pk}) not in body
    assert reverse("subscriptions:invoices", kwargs={"account_id": account.pk}) in body
    assert reverse("payments:methods", kwargs={"account_id": account.pk}) in body


def test_invoice_manager_sees_pay_actions_but_no_card_management(client, world):
    account, users, _ids = world
    client.force_login(users[IM])
    methods = client.get(reverse("payments:methods", kwargs={"account_id": account.pk})).content.decode()
    assert "Settle balance" in methods
    assert "Add a payment method" not in methods
    invoices = client.get(
        reverse("subscriptions:invoices", kwargs={"account_id": account.pk})
    ).content.decode()
    assert "Pay now" in invoices


@pytest.mark.parametrize(("name", "extra", "forbidden"), PAGES)
def test_unknown_account_id_is_404_like_another_tenants(client, world, name, extra, forbidden):
    account, users, ids = world
    client.force_login(users["owner"])
    url = _url(name, extra, account.pk, ids, users["owner"]).replace(f"/a/{account.pk}/", "/a/999999/", 1)
    assert client.get(url).status_code == 404


def test_another_accounts_invoice_number_is_404(client, world):
    account, users, _ids = world
    other_account, _ = account_with_subscriptions(1)
    foreign = other_account.invoices.get().number
    client.force_login(users["owner"])
    url = reverse("subscriptions:invoice_detail", kwargs={"account_id": account.pk, "number": foreign})
    assert client.get(url).status_code == 404


@pytest.mark.parametrize(
    ("who", "status"),
    [("owner", 302), ("admin", 302), ("reader", 403), ("invoice_manager", 403), ("outsider", 404)],
)
def test_notification_post_by_role(client, world, who, status):
    account, users, _ = world
    client.force_login(users[who] if who in users else outsider())
    url = reverse("accounts:notifications_edit", kwargs={"account_id": account.pk})
    response = client.post(url, {"email": "new@example.test", "language": "en"})
    assert response.status_code == status
    account.refresh_from_db()
    assert (account.notification_email == "new@example.test") == (status == 302)


@pytest.mark.parametrize(
    ("who", "status"), [("owner", 200), ("admin", 200), ("reader", 403), ("outsider", 404)]
)
def test_edit_pane_opens_for_owners_and_admins_only(client, world, who, status):
    account, users, _ = world
    client.force_login(users[who] if who in users else outsider())
    url = reverse("accounts:notifications_edit", kwargs={"account_id": account.pk})
    assert client.get(url).status_code == status


def test_anonymous_post_is_sent_to_sign_in(client, world):
    account, _, _ = world
    url = reverse("accounts:notifications_edit", kwargs={"account_id": account.pk})
    response = client.post(url, {"email": "new@example.test", "language": "en"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:signin"))


def test_sign_in_with_email_lands_on_first_account_home(client, world):
    account, users, _ = world
    response = client.post(
        reverse("accounts:signin"), {"username": users["admin"].email.upper(), "password": "demo-pass-2026"}
    )
    assert response.status_code == 302
    response = client.get(response["Location"])
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:home", kwargs={"account_id": account.pk})


def test_sign_in_page_labels_the_field_email(client):
    body = client.get(reverse("accounts:signin")).content.decode()
    assert "E-mail address" in body
    assert 'type="email"' in body


def test_wrong_password_says_so_and_stays(client, world):
    _, users, _ = world
    response = client.post(reverse("accounts:signin"), {"username": users["admin"].email, "password": "nope"})
    assert response.status_code == 200
    assert "don&#x27;t match an account" in response.content.decode()


def test_sign_out_is_post_only(client, world):
    _, users, _ = world
    client.force_login(users["owner"])
    assert client.get(reverse("accounts:signout")).status_code == 405
    response = client.post(reverse("accounts:signout"))
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_member_of_no_account_gets_a_friendly_page(client):
    client.force_login(UserFactory())
    response = client.get("/")
    assert response.status_code == 200
    assert "not a member of any billing account" in response.content.decode()


def test_staff_without_memberships_go_to_support_or_the_friendly_page(client):
    from accounts.views import support_url

    client.force_login(UserFactory(is_staff=True))
    response = client.get("/")
    if support_url():
        assert response.status_code == 302
        assert response["Location"] == support_url()
    else:
        assert response.status_code == 200
        assert "not a member of any billing account" in response.content.decode()


def test_account_switcher_lists_every_membership(client, world):
    account, users, _ = world
    second = MembershipFactory(user=users["reader"], role=Role.OWNER, account__name="Zeta Holding")
    client.force_login(users["reader"])
    body = client.get(reverse("accounts:home", kwargs={"account_id": account.pk})).content.decode()
    assert reverse("accounts:home", kwargs={"account_id": second.account_id}) in body
    assert "Zeta Holding" in body
    assert "Change billing account" in body


@pytest.mark.django_db(transaction=True)
def test_sign_in_is_rate_limited(client, settings, world):
    settings.AXES_ENABLED = True
    _, users, _ = world
    url = reverse("accounts:signin")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(url, {"username": users["admin"].email, "password": "wrong"}, REMOTE_ADDR="10.0.0.9")
    response = client.post(
        url, {"username": users["admin"].email, "password": "demo-pass-2026"}, REMOTE_ADDR="10.0.0.9"
    )
    assert response.status_code == 429
    assert "Too many sign-in attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_shell_prints_no_template_comments(client, world):
    """A multi-line {# #} comment is printed verbatim; one that mentioned <style> blanked every page."""
    account, users, _ = world
    client.force_login(users["owner"])
    for url in (reverse("accounts:signin"), reverse("accounts:home", kwargs={"account_id": account.pk})):
        body = client.get(url, follow=True).content.decode()
        assert "{#" not in body
        assert "{%" not in body
