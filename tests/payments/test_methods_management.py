"""Managing payment methods (PRODUCT.md flow 8): active card, replace for all items or one subscription,
edit, delete with a replacement, one method per card. Services first, then the panes."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Role
from audit.models import AuditEvent
from dunning.services import _chargeable_method
from gateway_sim.models import SimCard, SimCharge
from payments import services
from payments.detach import DETACH_FIRST_RETRY_AFTER, detach_due, detach_retry
from payments.gateways.base import CardResult, GatewayError
from payments.gateways.simulated import SimulatedGateway
from payments.models import PaymentAttempt, PaymentMethod
from payments.selectors import payment_methods_usable
from subscriptions.models import Subscription
from tests.factories import MembershipFactory
from tests.payments.scenario import build_contoso, card, subscription

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def _audits(action: str) -> int:
    return AuditEvent.objects.filter(action=action).count()


# --------------------------------------------------------------------------------- active payment method


def test_make_a_card_the_active_payment_method_moves_the_default(contoso):
    services.payment_method_set_default(
        account_id=contoso.account.pk, method_id=contoso.visa.pk, actor=contoso.finance
    )
    assert PaymentMethod.objects.get(is_default=True, account=contoso.account) == contoso.visa
    # Again (a double click) changes nothing and audits nothing new.
    services.payment_method_set_default(
        account_id=contoso.account.pk, method_id=contoso.visa.pk, actor=contoso.finance
    )
    assert _audits("payment_method.made_default") == 1


def test_an_expired_card_cannot_become_the_active_method(contoso):
    old = card(
        account=contoso.account, number="4242424242424242", owner=contoso.admin, exp_month=1, exp_year=2020
    )
    with pytest.raises(services.PaymentError, match="expired"):
        services.payment_method_set_default(
            account_id=contoso.account.pk, method_id=old.pk, actor=contoso.admin
        )
    assert not PaymentMethod.objects.filter(pk=old.pk, is_default=True).exists()


@pytest.mark.parametrize("role", [Role.READER])
def test_readers_may_not_manage_cards_even_through_the_service(contoso, role):
    for call in (
        lambda: services.payment_method_set_default(
            account_id=contoso.account.pk, method_id=contoso.visa.pk, actor=contoso.reader
        ),
        lambda: services.payment_method_replace_all(
            account_id=contoso.account.pk,
            from_method_id=contoso.visa.pk,
            to_method_id=contoso.mastercard.pk,
            actor=contoso.reader,
        ),
        lambda: services.payment_method_remove(
            account_id=contoso.account.pk, method_id=contoso.visa.pk, actor=contoso.reader
        ),
        lambda: services.payment_method_update(
            account_id=contoso.account.pk, method_id=contoso.visa.pk, actor=contoso.reader, holder_name="X"
        ),
    ):
        with pytest.raises(services.PaymentNotAllowed):
            call()
    assert AuditEvent.objects.filter(action__startswith="payment_method.").count() == 0


# --------------------------------------------------------------------------------- replace


def test_replace_for_all_items_moves_every_subscription_and_charges_nothing(contoso):
    charges = SimCharge.objects.count()
    moved = services.payment_method_replace_all(
        account_id=contoso.account.pk,
        from_method_id=contoso.visa.pk,
        to_method_id=contoso.mastercard.pk,
        actor=contoso.finance,
    )
    assert moved == 3
    assert not Subscription.objects.filter(payment_method=contoso.visa).exists()
    assert SimCharge.objects.count() == charges
    assert PaymentAttempt.objects.count() == 0
    # A second submit finds nothing left to move, and audits once.
    assert (
        services.payment_method_replace_all(
            account_id=contoso.account.pk,
            from_method_id=contoso.visa.pk,
            to_method_id=contoso.mastercard.pk,
            actor=contoso.finance,
        )
        == 0
    )
    assert _audits("payment_method.replaced") == 1


def test_replace_refuses_the_same_card_and_another_accounts_card(contoso):
    other = build_contoso(prefix="other-")
    with pytest.raises(services.PaymentError):
        services.payment_method_replace_all(
            account_id=contoso.account.pk,
            from_method_id=contoso.visa.pk,
            to_method_id=contoso.visa.pk,
            actor=contoso.admin,
        )
    with pytest.raises(services.PaymentError):
        services.payment_method_replace_all(
            account_id=contoso.account.pk,
            from_method_id=contoso.visa.pk,
            to_method_id=other.mastercard.pk,
            actor=contoso.admin,
        )
    assert Subscription.objects.filter(payment_method=contoso.visa).count() == 3


def test_replace_pane_works_without_javascript_and_with_htmx(client, contoso):
    client.force_login(contoso.finance)
    url = reverse("payments:method_replace", args=[contoso.account.pk, contoso.visa.pk])
    page = client.get(url).content.decode()
    assert "Replace payment method for all items" in page
    assert "3 subscriptions are paid with Visa ending 0341" in page
    # Nothing chosen: a clear message in the pane, nothing moved.
    body = client.post(url, {}).content.decode()
    assert "Choose the card that pays these subscriptions." in body
    response = client.post(url, {"method": str(contoso.mastercard.pk)}, headers=HX)
    assert "closePane" in response["HX-Trigger"]
    assert "3 subscriptions now use Mastercard ending 4444" in response.content.decode()
    assert Subscription.objects.filter(payment_method=contoso.mastercard).count() == 5


def test_replace_pane_answers_another_accounts_ids_with_404(client, contoso):
    other = build_contoso(prefix="other-")
    client.force_login(contoso.admin)
    url = reverse("payments:method_replace", args=[contoso.account.pk, other.visa.pk])
    assert client.get(url).status_code == 404
    own = reverse("payments:method_replace", args=[contoso.account.pk, contoso.visa.pk])
    assert client.post(own, {"method": str(other.mastercard.pk)}).status_code == 404
    # Digits from other scripts are not ids.
    assert "Choose the card" in client.post(own, {"method": "²"}).content.decode()
    assert Subscription.objects.filter(payment_method=contoso.visa).count() == 3


def test_replace_payment_method_of_one_subscription_from_your_products(client, contoso):
    client.force_login(contoso.admin)
    products = client.get(reverse("subscriptions:products", args=[contoso.account.pk])).content.decode()
    url = reverse("payments:subscription_replace", args=[contoso.account.pk, contoso.subs["powerbi"].pk])
    assert url in products
    assert "Replace payment method" in products
    response = client.post(url, {"method": str(contoso.mastercard.pk)})
    assert response.status_code == 303
    assert Subscription.objects.get(pk=contoso.subs["powerbi"].pk).payment_method == contoso.mastercard
    assert Subscription.objects.get(pk=contoso.subs["m365"].pk).payment_method == contoso.visa
    assert _audits("payment_method.replaced") == 1
    other = build_contoso(prefix="other-")
    foreign = reverse("payments:subscription_replace", args=[contoso.account.pk, other.subs["m365"].pk])
    assert client.get(foreign).status_code == 404


def test_readers_see_no_row_menus_and_get_403_on_every_pane(client, contoso):
    client.force_login(contoso.reader)
    page = client.get(reverse("payments:methods", args=[contoso.account.pk])).content.decode()
    assert "More actions for" not in page
    products = client.get(reverse("subscriptions:products", args=[contoso.account.pk])).content.decode()
    assert "Replace payment method" not in products
    a, v = contoso.account.pk, contoso.visa.pk
    for name, args in (
        ("payments:method_edit", [a, v]),
        ("payments:method_replace", [a, v]),
        ("payments:method_delete", [a, v]),
        ("payments:subscription_replace", [a, contoso.subs["m365"].pk]),
        ("payments:method_add", [a]),
    ):
        assert client.get(reverse(name, args=args)).status_code == 403, name
    assert client.post(reverse("payments:method_set_default", args=[a, v])).status_code == 403


# --------------------------------------------------------------------------------- edit


def test_edit_saves_name_and_address_with_country_and_audits(client, contoso):
    client.force_login(contoso.finance)
    url = reverse("payments:method_edit", args=[contoso.account.pk, contoso.mastercard.pk])
    response = client.post(
        url,
        {
            "holder_name": "Adele Vance",
            "address_line1": "Herengracht 1",
            "postal_code": "1015 BA",
            "city": "Amsterdam",
            "country": "NL",
            "exp_month": "03",
            "exp_year": "2029",
        },
        headers=HX,
    )
    assert "closePane" in response["HX-Trigger"]
    method = PaymentMethod.objects.get(pk=contoso.mastercard.pk)
    assert (method.address_line1, method.city, method.country) == ("Herengracht 1", "Amsterdam", "NL")
    event = AuditEvent.objects.get(action="payment_method.edited")
    assert "address_line1" in event.data["changed"]


def test_edit_with_bad_input_keeps_what_was_typed_and_changes_nothing(client, contoso):
    client.force_login(contoso.finance)
    url = reverse("payments:method_edit", args=[contoso.account.pk, contoso.mastercard.pk])
    body = client.post(
        url,
        {
            "holder_name": "Adele Typed",
            "city": "Utrecht",
            "country": "XX",
            "exp_month": "13",
            "exp_year": "2029",
        },
    ).content.decode()
    assert "Choose a country from the list." in body
    assert 'value="Adele Typed"' in body
    assert 'value="Utrecht"' in body
    assert PaymentMethod.objects.get(pk=contoso.mastercard.pk).city == ""
    body = client.post(url, {"holder_name": "", "exp_month": "13", "exp_year": "2029"}).content.decode()
    assert "Enter the name as printed on the card." in body
    assert "1 to 12" in body
    assert not AuditEvent.objects.filter(action="payment_method.edited").exists()


def test_the_number_is_never_editable(client, contoso):
    client.force_login(contoso.admin)
    url = reverse("payments:method_edit", args=[contoso.account.pk, contoso.visa.pk])
    body = client.get(url).content.decode()
    assert 'name="number"' not in body
    client.post(
        url, {"holder_name": "Megan", "number": "4242424242424242", "exp_month": "12", "exp_year": "2030"}
    )
    visa = PaymentMethod.objects.get(pk=contoso.visa.pk)
    assert visa.last4 == "0341"


def test_non_owner_cannot_edit_expiry_through_the_service(contoso):
    with pytest.raises(services.NotCardOwner):
        services.payment_method_update(
            account_id=contoso.account.pk,
            method_id=contoso.visa.pk,
            actor=contoso.finance,
            holder_name="Megan Bowen",
            exp_month="1",
            exp_year="2031",
        )


def test_new_expiry_clears_only_an_expiry_decline(contoso):
    services.payment_method_update(
        account_id=contoso.account.pk,
        method_id=contoso.visa.pk,
        actor=contoso.admin,
        holder_name="Megan Bowen",
        exp_month="1",
        exp_year="2031",
    )
    visa = PaymentMethod.objects.get(pk=contoso.visa.pk)
    assert (visa.status, visa.last_decline_code) == ("declined", "card_declined")
    PaymentMethod.objects.filter(pk=visa.pk).update(last_decline_code="expired_card")
    services.payment_method_update(
        account_id=contoso.account.pk,
        method_id=contoso.visa.pk,
        actor=contoso.admin,
        holder_name="Megan Bowen",
        exp_month="2",
        exp_year="2031",
    )
    visa.refresh_from_db()
    assert (visa.status, visa.last_decline_code) == ("valid", "")


# --------------------------------------------------------------------------------- delete


def test_delete_requires_a_replacement_while_subscriptions_use_the_card(client, contoso):
    client.force_login(contoso.admin)
    url = reverse("payments:method_delete", args=[contoso.account.pk, contoso.visa.pk])
    page = client.get(url).content.decode()
    assert "Replacement payment method" in page
    body = client.post(url, {}).content.decode()
    assert "Choose the payment method that pays this card" in body
    assert PaymentMethod.objects.get(pk=contoso.visa.pk).status == "declined"


def test_delete_with_replacement_moves_subscriptions_detaches_and_keeps_history(client, contoso):
    services.payment_method_set_default(
        account_id=contoso.account.pk, method_id=contoso.visa.pk, actor=contoso.admin
    )
    client.force_login(contoso.admin)
    url = reverse("payments:method_delete", args=[contoso.account.pk, contoso.visa.pk])
    response = client.post(url, {"replacement": str(contoso.mastercard.pk)}, headers=HX)
    assert "closePane" in response["HX-Trigger"]
    assert "Visa ending 0341 was deleted. 3 subscriptions now use Mastercard ending 4444." in (
        response.content.decode()
    )
    visa = PaymentMethod.objects.get(pk=contoso.visa.pk)  # kept for history
    assert visa.status == PaymentMethod.Status.DETACHED
    assert visa.removed_at is not None
    assert visa.gateway_detached_at is not None
    assert SimCard.objects.get(token=visa.gateway_token).forgotten_at is not None
    assert not visa.is_default
    assert PaymentMethod.objects.get(pk=contoso.mastercard.pk).is_default
    assert Subscription.objects.filter(payment_method=contoso.mastercard).count() == 5
    # Gone from the page and from every pane's choice; a second delete (double submit) changes nothing.
    page = client.get(reverse("payments:methods", args=[contoso.account.pk])).content.decode()
    assert "Visa ending 0341" not in page
    assert client.post(url, {"replacement": str(contoso.mastercard.pk)}).status_code == 404
    assert (
        services.payment_method_remove(
            account_id=contoso.account.pk, method_id=visa.pk, actor=contoso.admin
        ).removed_at
        == visa.removed_at
    )
    assert _audits("payment_method.removed") == 1


def test_a_removed_card_is_never_charged_again(contoso):
    services.payment_method_remove(
        account_id=contoso.account.pk,
        method_id=contoso.visa.pk,
        actor=contoso.admin,
        replacement_id=contoso.mastercard.pk,
    )
    visa = PaymentMethod.objects.get(pk=contoso.visa.pk)
    with pytest.raises(services.PaymentError):
        services.invoices_charge(
            account_id=contoso.account.pk,
            invoice_ids=[contoso.invoices["m365"].pk],
            payment_method_id=visa.pk,
            source=PaymentAttempt.Source.RETRY,
            off_session=True,
            idempotency_key="retry:removed",
        )
    # Dunning: a subscription still pointing at a removed card (e.g. from before) is not charged on it.
    sub = contoso.subs["m365"]
    Subscription.objects.filter(pk=sub.pk).update(payment_method=visa)
    sub.refresh_from_db()
    assert _chargeable_method(sub, contoso.account) is None
    # And the simulated bank refuses the detached card too.
    assert SimCharge.objects.filter(card__token=visa.gateway_token).count() == 0


def test_a_card_with_a_payment_in_flight_cannot_be_deleted(contoso):
    PaymentAttempt.objects.create(
        account=contoso.account,
        payment_method=contoso.mastercard,
        amount_minor=1400,
        currency="EUR",
        source=PaymentAttempt.Source.SETTLE,
        status=PaymentAttempt.Status.UNKNOWN,
        idempotency_key="in-flight",
    )
    with pytest.raises(services.PaymentInProgress):
        services.payment_method_remove(
            account_id=contoso.account.pk,
            method_id=contoso.mastercard.pk,
            actor=contoso.admin,
            replacement_id=contoso.visa.pk,
        )
    assert PaymentMethod.objects.get(pk=contoso.mastercard.pk).status == "valid"


def test_an_unused_card_is_deleted_without_a_replacement(contoso):
    spare = card(account=contoso.account, number="4242424242424242", owner=contoso.admin)
    services.payment_method_remove(account_id=contoso.account.pk, method_id=spare.pk, actor=contoso.finance)
    assert PaymentMethod.objects.get(pk=spare.pk).is_removed


# --------------------------------------------------------------------------------- one method per card


def test_the_same_card_added_twice_is_one_method(client, contoso, django_capture_on_commit_callbacks):
    client.force_login(contoso.finance)
    url = reverse("payments:method_add", args=[contoso.account.pk])
    data = {"number": "4242 4242 4242 4242", "exp_month": "7", "exp_year": "2030", "cvc": "123"}
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, data)
        client.post(url, data)  # a double submit, or the same card typed again
    cards = PaymentMethod.objects.filter(account=contoso.account, last4="4242")
    kept = cards.exclude(status="detached").get()
    # The gateway's duplicate is forgotten at the bank; the kept one still works.
    sim = SimCard.objects.filter(number="4242424242424242")
    assert sim.count() == 2
    assert sim.filter(forgotten_at__isnull=True).get().token == kept.gateway_token
    assert _audits("payment_method.added") == 1
    # The duplicate is kept only as a removed card, confirmed detached, so no sweep tries it again.
    dropped = cards.get(status="detached")
    assert dropped.gateway_token == sim.get(forgotten_at__isnull=False).token
    assert dropped.removed_at is not None
    assert dropped.gateway_detached_at is not None
    assert not detach_due(now=timezone.now() + dt.timedelta(days=30)).filter(pk=dropped.pk).exists()
    assert _audits("payment_method.duplicate_dropped") == 1
    assert list(payment_methods_usable(account=contoso.account).filter(last4="4242")) == [kept]


def test_a_duplicate_the_gateway_cannot_detach_now_is_retried(
    client, contoso, monkeypatch, django_capture_on_commit_callbacks
):
    """The same card added again while the gateway is down: its second copy is not lost track of. The detach
    sweep retries it like a deleted card's until the gateway confirms it."""
    client.force_login(contoso.finance)
    url = reverse("payments:method_add", args=[contoso.account.pk])
    data = {"number": "4242 4242 4242 4242", "exp_month": "7", "exp_year": "2030", "cvc": "123"}
    client.post(url, data)
    real = SimulatedGateway.detach
    failing = [True]

    def detach(gateway, *, token: str) -> None:
        if failing[0]:
            raise GatewayError("simulated: bank unreachable", permanent=False)
        real(gateway, token=token)

    monkeypatch.setattr(SimulatedGateway, "detach", detach)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:  # the add's own detach: it fails
        client.post(url, data)
    assert len(callbacks) == 1
    dropped = PaymentMethod.objects.get(account=contoso.account, last4="4242", status="detached")
    assert dropped.gateway_detached_at is None
    assert SimCard.objects.get(token=dropped.gateway_token).forgotten_at is None
    later = timezone.now() + DETACH_FIRST_RETRY_AFTER + dt.timedelta(seconds=1)
    assert detach_retry(method_id=dropped.pk, now=later) is False
    failing[0] = False
    dropped.refresh_from_db()
    assert detach_retry(method_id=dropped.pk, now=dropped.gateway_detach_next_at) is True
    dropped.refresh_from_db()
    assert dropped.gateway_detached_at is not None
    assert SimCard.objects.get(token=dropped.gateway_token).forgotten_at is not None
    kept = PaymentMethod.objects.exclude(status="detached").get(account=contoso.account, last4="4242")
    assert SimCard.objects.get(token=kept.gateway_token).forgotten_at is None


def test_a_renewed_card_added_again_keeps_one_method_and_its_old_token_as_removed(contoso):
    """Stripe's fingerprint names the card number, so a renewed card (new expiry, new token) is the same
    method: the method takes the new token, and the old token is kept as a removed card to detach."""

    def record(token: str, exp_year: int) -> PaymentMethod:
        return services._payment_method_record(
            account_id=contoso.account.pk,
            actor=contoso.admin,
            gateway_name="simulated",
            card=CardResult(
                ok=True,
                token=token,
                brand="visa",
                last4="4242",
                exp_month=7,
                exp_year=exp_year,
                fingerprint="fp-1",
            ),
            holder_name="Megan Bowen",
        )

    first = record("tok_renewed_old", 2030)
    again = record("tok_renewed_new", 2031)
    assert again.pk == first.pk
    assert (again.gateway_token, again.exp_year) == ("tok_renewed_new", 2031)
    dropped = PaymentMethod.objects.get(gateway_token="tok_renewed_old")
    assert dropped.is_removed
    assert (dropped.exp_month, dropped.exp_year) == (7, 2030)
    assert dropped.gateway_detached_at is None  # no on-commit here: the detach sweep will take it
    assert _audits("payment_method.expiry_changed") == 1
    assert _audits("payment_method.duplicate_dropped") == 1
    # The same answer told twice (a webhook and the browser) records nothing more.
    assert record("tok_renewed_new", 2031).pk == first.pk
    assert record("tok_renewed_old", 2030).pk == first.pk
    assert PaymentMethod.objects.filter(account=contoso.account, fingerprint="fp-1").count() == 2
    assert _audits("payment_method.duplicate_dropped") == 1


def test_a_seeded_card_typed_again_is_the_same_method(contoso):
    services.payment_method_add(
        account_id=contoso.account.pk,
        actor=contoso.admin,
        number="5555555555554444",
        exp_month="12",
        exp_year="2030",
        cvc="123",
    )
    assert (
        PaymentMethod.objects.filter(account=contoso.account, last4="4444").exclude(status="detached").count()
        == 1
    )


def test_a_removed_card_can_be_added_again_as_a_new_method(contoso):
    spare = card(account=contoso.account, number="4242424242424242", owner=contoso.admin)
    services.payment_method_remove(account_id=contoso.account.pk, method_id=spare.pk, actor=contoso.admin)
    again = services.payment_method_add(
        account_id=contoso.account.pk,
        actor=contoso.admin,
        number="4242424242424242",
        exp_month="12",
        exp_year="2030",
        cvc="123",
    )
    assert again.pk != spare.pk
    assert again.status == "valid"


# --------------------------------------------------------------------------------- the page


def test_table_shows_expired_cards_and_a_working_cards_own_past_due_charge(client):
    from tests.pages_helpers import demo_account, seed_demo

    seed_demo()
    fabrikam = demo_account("Fabrikam BV")
    client.force_login(Membership.objects.get(account=fabrikam, role=Role.OWNER).user)
    body = client.get(reverse("payments:methods", args=[fabrikam.pk])).content.decode()
    assert "Verlopen 10/2026" in body
    contoso = demo_account("Contoso Ltd")
    client.force_login(Membership.objects.get(account=contoso, role=Role.OWNER).user)
    body = client.get(reverse("payments:methods", args=[contoso.pk])).content.decode()
    assert "Mastercard ending 4444 has a past due charge of €14.00 on 1 subscription." in body
    master = PaymentMethod.objects.get(account=contoso, last4="4444")
    assert reverse("payments:settle", args=[contoso.pk, master.pk]) in body
    assert "Your Visa ending 0341 was declined (card declined)." in body
    assert "Make this my active payment method" in body


def test_set_active_from_the_row_menu_without_javascript(client, contoso):
    client.force_login(contoso.admin)
    response = client.post(reverse("payments:method_set_default", args=[contoso.account.pk, contoso.visa.pk]))
    assert response.status_code == 303
    page = client.get(response["Location"]).content.decode()
    assert "Visa ending 0341 is now your active payment method." in page
    assert PaymentMethod.objects.get(pk=contoso.visa.pk).is_default


def test_invoice_managers_and_admins_of_other_accounts_cannot_reach_the_panes(client, contoso):
    stranger = MembershipFactory(role=Role.OWNER).user
    client.force_login(stranger)
    for name in ("payments:method_edit", "payments:method_delete", "payments:method_replace"):
        assert client.get(reverse(name, args=[contoso.account.pk, contoso.visa.pk])).status_code == 404


def test_pay_now_pane_offers_the_active_method_when_the_subscription_has_none(client, contoso):
    sub = contoso.subs["teams"]
    Subscription.objects.filter(pk=sub.pk).update(payment_method=None)
    client.force_login(contoso.admin)
    services.payment_method_set_default(
        account_id=contoso.account.pk, method_id=contoso.mastercard.pk, actor=contoso.admin
    )
    body = client.get(
        reverse("payments:invoice_pay", args=[contoso.account.pk, contoso.invoices["teams"].number])
    ).content.decode()
    assert f'value="{contoso.mastercard.pk}" checked' in body


def test_pay_now_pane_never_preselects_a_declined_active_method(client, contoso):
    # The Visa is the active method but declined: the pane offers the working Mastercard instead (issue 11).
    Subscription.objects.filter(pk=contoso.subs["teams"].pk).update(payment_method=None)
    PaymentMethod.objects.filter(account=contoso.account).update(is_default=False)
    PaymentMethod.objects.filter(pk=contoso.visa.pk).update(is_default=True)
    client.force_login(contoso.admin)
    body = client.get(
        reverse("payments:invoice_pay", args=[contoso.account.pk, contoso.invoices["teams"].number])
    ).content.decode()
    assert f'value="{contoso.visa.pk}" checked' not in body
    assert f'value="{contoso.mastercard.pk}" checked' in body


def test_expired_reads_from_the_date(contoso):
    today = timezone.localdate()
    last_month = today.replace(day=1) - dt.timedelta(days=1)
    old = card(
        account=contoso.account,
        number="4012888888881881",
        owner=contoso.admin,
        exp_month=last_month.month,
        exp_year=last_month.year,
    )
    assert old.is_expired()
    assert not contoso.mastercard.is_expired()
    _sub, _inv = subscription(
        account=contoso.account, name="Spare", quantity=1, unit_price_minor=100, method=old, past_due=False
    )
    with pytest.raises(services.PaymentError, match="expired"):
        services.payment_method_replace_all(
            account_id=contoso.account.pk,
            from_method_id=contoso.visa.pk,
            to_method_id=old.pk,
            actor=contoso.admin,
        )
