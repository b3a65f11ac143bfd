"""The shared payment engine and the customer services on top of it, on the simulated gateway."""

import uuid

import pytest
from django.core import mail

from audit.models import AuditEvent
from gateway_sim.models import SimCharge
from notifications.models import Notice
from payments import services
from payments.models import PaymentAttempt, PaymentMethod
from payments.selectors import settle_quote
from subscriptions.models import Invoice, Subscription
from tests.payments.scenario import card, subscription

pytestmark = pytest.mark.django_db


def key() -> str:
    return str(uuid.uuid4())


def test_settle_quote_adds_the_chosen_methods_past_due_charges(contoso):
    quote = settle_quote(
        account=contoso.account, failed_method=contoso.visa, chosen_method=contoso.mastercard
    )
    assert quote.failed_total.amount_minor == 37650
    assert quote.chosen_method_total.amount_minor == 1400
    assert quote.total.amount_minor == 39050
    assert quote.total.format("en") == "€390.50"
    same = settle_quote(account=contoso.account, failed_method=contoso.visa, chosen_method=contoso.visa)
    assert same.total.amount_minor == 37650


def test_settle_with_another_card_pays_everything_in_one_charge_and_moves_subscriptions(
    contoso, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        attempt = services.balance_settle(
            account_id=contoso.account.pk,
            failed_method_id=contoso.visa.pk,
            chosen_method_id=contoso.mastercard.pk,
            actor=contoso.admin,
            idempotency_key=key(),
        )
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    assert attempt.amount_minor == 39050
    assert SimCharge.objects.count() == 1
    assert attempt.allocations.count() == 4
    for name in ("m365", "exchange", "powerbi", "visio"):
        inv = Invoice.objects.get(pk=contoso.invoices[name].pk)
        assert inv.status == Invoice.Status.PAID
        assert inv.amount_due_minor == 0
        sub = Subscription.objects.get(pk=contoso.subs[name].pk)
        assert sub.status == Subscription.Status.ACTIVE
        assert sub.payment_method_id == contoso.mastercard.pk
    # Teams' open invoice is not past due and not part of the balance.
    assert Invoice.objects.get(pk=contoso.invoices["teams"].pk).status == Invoice.Status.OPEN
    # The failed Visa stays declined: it did not pay.
    assert PaymentMethod.objects.get(pk=contoso.visa.pk).status == PaymentMethod.Status.DECLINED
    assert AuditEvent.objects.filter(action="payment.succeeded").count() == 1
    notice = Notice.objects.get(kind="payment_received")
    assert notice.recipient == contoso.account.notification_email
    assert len(mail.outbox) == 1
    assert attempt.reference in mail.outbox[0].body
    assert "€390.50" in mail.outbox[0].subject


def test_settle_with_the_declining_card_changes_nothing(contoso):
    attempt = services.balance_settle(
        account_id=contoso.account.pk,
        failed_method_id=contoso.visa.pk,
        chosen_method_id=contoso.visa.pk,
        actor=contoso.admin,
        idempotency_key=key(),
    )
    assert attempt.status == PaymentAttempt.Status.FAILED
    assert attempt.decline_code == "card_declined"
    assert "declined" in attempt.decline_message
    assert Invoice.objects.filter(status=Invoice.Status.PAID).count() == 0
    assert Subscription.objects.filter(payment_method=contoso.visa).count() == 3
    assert not Notice.objects.exists()


def test_same_idempotency_key_charges_once(contoso):
    k = key()
    kwargs = dict(
        account_id=contoso.account.pk,
        failed_method_id=contoso.visa.pk,
        chosen_method_id=contoso.mastercard.pk,
        actor=contoso.admin,
        idempotency_key=k,
    )
    first = services.balance_settle(**kwargs)
    second = services.balance_settle(**kwargs)
    assert first.pk == second.pk
    assert SimCharge.objects.count() == 1
    assert PaymentAttempt.objects.count() == 1


def test_second_settle_with_new_key_finds_nothing_to_pay(contoso):
    services.balance_settle(
        account_id=contoso.account.pk,
        failed_method_id=contoso.visa.pk,
        chosen_method_id=contoso.mastercard.pk,
        actor=contoso.admin,
        idempotency_key=key(),
    )
    with pytest.raises(services.NothingToPay):
        services.balance_settle(
            account_id=contoso.account.pk,
            failed_method_id=contoso.visa.pk,
            chosen_method_id=contoso.mastercard.pk,
            actor=contoso.admin,
            idempotency_key=key(),
        )
    assert SimCharge.objects.count() == 1


def test_reader_cannot_pay(contoso):
    with pytest.raises(services.PaymentNotAllowed):
        services.balance_settle(
            account_id=contoso.account.pk,
            failed_method_id=contoso.visa.pk,
            chosen_method_id=contoso.mastercard.pk,
            actor=contoso.reader,
            idempotency_key=key(),
        )
    assert not SimCharge.objects.exists()


def test_pay_now_pays_one_invoice(contoso):
    attempt = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=contoso.invoices["teams"].pk,
        payment_method_id=contoso.mastercard.pk,
        actor=contoso.finance,
        idempotency_key=key(),
    )
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    assert attempt.amount_minor == 3600
    assert Invoice.objects.get(pk=contoso.invoices["teams"].pk).status == Invoice.Status.PAID
    assert Invoice.objects.filter(status=Invoice.Status.PAST_DUE).count() == 4


def test_in_flight_attempt_blocks_a_second_payment(contoso):
    PaymentAttempt.objects.create(
        account=contoso.account,
        payment_method=contoso.mastercard,
        amount_minor=3600,
        currency="EUR",
        source=PaymentAttempt.Source.RETRY,
        status=PaymentAttempt.Status.UNKNOWN,
        idempotency_key=key(),
    ).allocations.create(invoice=contoso.invoices["teams"], amount_minor=3600)
    with pytest.raises(services.PaymentInProgress):
        services.invoice_pay(
            account_id=contoso.account.pk,
            invoice_id=contoso.invoices["teams"].pk,
            payment_method_id=contoso.mastercard.pk,
            actor=contoso.finance,
            idempotency_key=key(),
        )
    assert not SimCharge.objects.exists()


def test_off_session_renewal_decline_marks_invoice_and_subscription_past_due(contoso):
    sub, invoice = subscription(
        account=contoso.account,
        name="Renewed",
        quantity=2,
        unit_price_minor=500,
        method=contoso.visa,
        past_due=False,
    )
    attempt = services.invoices_charge(
        account_id=contoso.account.pk,
        invoice_ids=[invoice.pk],
        payment_method_id=contoso.visa.pk,
        source=PaymentAttempt.Source.RENEWAL,
        off_session=True,
        idempotency_key=key(),
        actor_label="renewal job",
    )
    assert attempt.status == PaymentAttempt.Status.FAILED
    invoice.refresh_from_db()
    sub.refresh_from_db()
    assert invoice.status == Invoice.Status.PAST_DUE
    assert sub.status == Subscription.Status.PAST_DUE


def test_off_session_3ds_card_is_declined_authentication_required(contoso):
    sca = card(account=contoso.account, number="4000002500003155", owner=contoso.admin)
    _sub, invoice = subscription(
        account=contoso.account, name="SCA", quantity=1, unit_price_minor=500, method=sca, past_due=False
    )
    attempt = services.invoices_charge(
        account_id=contoso.account.pk,
        invoice_ids=[invoice.pk],
        payment_method_id=sca.pk,
        source=PaymentAttempt.Source.RETRY,
        off_session=True,
        idempotency_key=key(),
    )
    assert attempt.status == PaymentAttempt.Status.FAILED
    assert attempt.decline_code == "authentication_required"


def _three_ds_settle(contoso):
    sca = card(account=contoso.account, number="4000002500003155", owner=contoso.finance)
    attempt = services.balance_settle(
        account_id=contoso.account.pk,
        failed_method_id=contoso.visa.pk,
        chosen_method_id=sca.pk,
        actor=contoso.finance,
        idempotency_key=key(),
        return_url="/back/",
    )
    return sca, attempt


def test_3ds_completed_then_settles(contoso):
    from gateway_sim.services import sim_charge_authenticate

    _sca, attempt = _three_ds_settle(contoso)
    assert attempt.status == PaymentAttempt.Status.REQUIRES_ACTION
    assert attempt.action_url.startswith("/gateway/simulated/3ds/")
    assert Invoice.objects.filter(status=Invoice.Status.PAID).count() == 0
    sim_charge_authenticate(reference=attempt.gateway_reference, success=True)
    attempt = services.attempt_complete_action(attempt_id=attempt.pk)
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    assert Invoice.objects.filter(status=Invoice.Status.PAID).count() == 3


def test_3ds_failed_on_a_new_cards_first_payment_pays_nothing_and_does_not_keep_the_card(
    contoso, django_capture_on_commit_callbacks
):
    from gateway_sim.models import SimCard
    from gateway_sim.services import sim_charge_authenticate

    sca, attempt = _three_ds_settle(contoso)
    sim_charge_authenticate(reference=attempt.gateway_reference, success=False)
    with django_capture_on_commit_callbacks(execute=True):
        attempt = services.attempt_complete_action(attempt_id=attempt.pk)
    assert attempt.status == PaymentAttempt.Status.FAILED
    assert attempt.decline_code == "authentication_failed"
    assert Invoice.objects.filter(status=Invoice.Status.PAID).count() == 0
    # The card was added to pay this and its holder failed the bank's check: it is not kept as valid.
    sca.refresh_from_db()
    assert sca.status == PaymentMethod.Status.DETACHED
    assert sca.removed_at is not None
    assert SimCard.objects.get(token=sca.gateway_token).forgotten_at is not None
    # The failed card's subscriptions stay where they were.
    assert contoso.subs["m365"].payment_method_id == contoso.visa.pk


def test_3ds_failed_on_a_card_in_use_keeps_the_card_usable(contoso):
    from gateway_sim.services import sim_charge_authenticate

    sca = card(account=contoso.account, number="4000002500003155", owner=contoso.finance)
    subscription(
        account=contoso.account, name="On SCA", quantity=1, unit_price_minor=500, method=sca, past_due=False
    )
    attempt = services.balance_settle(
        account_id=contoso.account.pk,
        failed_method_id=contoso.visa.pk,
        chosen_method_id=sca.pk,
        actor=contoso.finance,
        idempotency_key=key(),
        return_url="/back/",
    )
    sim_charge_authenticate(reference=attempt.gateway_reference, success=False)
    attempt = services.attempt_complete_action(attempt_id=attempt.pk)
    assert attempt.decline_code == "authentication_failed"
    assert PaymentMethod.objects.get(pk=sca.pk).status == PaymentMethod.Status.VALID


def test_abandoned_3ds_attempt_is_canceled_when_customer_pays_again(contoso):
    _sca, stale = _three_ds_settle(contoso)
    attempt = services.balance_settle(
        account_id=contoso.account.pk,
        failed_method_id=contoso.visa.pk,
        chosen_method_id=contoso.mastercard.pk,
        actor=contoso.admin,
        idempotency_key=key(),
    )
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    stale.refresh_from_db()
    assert stale.status == PaymentAttempt.Status.CANCELED
    assert SimCharge.objects.get(reference=stale.gateway_reference).status == SimCharge.Status.CANCELED


def test_abandoned_3ds_that_succeeded_after_all_is_applied_not_charged_again(contoso):
    from gateway_sim.services import sim_charge_authenticate

    _sca, stale = _three_ds_settle(contoso)
    sim_charge_authenticate(reference=stale.gateway_reference, success=True)  # customer never came back
    # The €376.50 went through after all; only Visio's €14.00 is left, which is not what was shown.
    with pytest.raises(services.BalanceChanged):
        services.balance_settle(
            account_id=contoso.account.pk,
            failed_method_id=contoso.visa.pk,
            chosen_method_id=contoso.mastercard.pk,
            actor=contoso.admin,
            idempotency_key=key(),
        )
    stale.refresh_from_db()
    assert stale.status == PaymentAttempt.Status.SUCCEEDED
    assert SimCharge.objects.filter(status=SimCharge.Status.SUCCEEDED).count() == 1


def test_timeout_leaves_unknown_then_reconcile_finds_the_charge(contoso, settings):
    settings.SIMULATED_GATEWAY_TIMEOUT_CARDS = ["5555555555554444"]
    attempt = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=contoso.invoices["teams"].pk,
        payment_method_id=contoso.mastercard.pk,
        actor=contoso.finance,
        idempotency_key=key(),
    )
    assert attempt.status == PaymentAttempt.Status.UNKNOWN
    assert attempt.reconcile_after is not None
    assert Invoice.objects.get(pk=contoso.invoices["teams"].pk).status == Invoice.Status.OPEN
    # Nobody can charge it again while it is unknown.
    with pytest.raises(services.PaymentInProgress):
        services.invoice_pay(
            account_id=contoso.account.pk,
            invoice_id=contoso.invoices["teams"].pk,
            payment_method_id=contoso.mastercard.pk,
            actor=contoso.finance,
            idempotency_key=key(),
        )
    attempt = services.attempt_reconcile(attempt_id=attempt.pk)
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    assert Invoice.objects.get(pk=contoso.invoices["teams"].pk).status == Invoice.Status.PAID
    assert SimCharge.objects.count() == 1
    # Reconciling again changes nothing.
    assert services.attempt_reconcile(attempt_id=attempt.pk).status == PaymentAttempt.Status.SUCCEEDED
    assert Notice.objects.filter(kind="payment_received").count() == 1


def test_request_that_never_arrived_is_released_by_reconcile(contoso, settings):
    settings.SIMULATED_GATEWAY_UNREACHABLE_CARDS = ["5555555555554444"]
    attempt = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=contoso.invoices["teams"].pk,
        payment_method_id=contoso.mastercard.pk,
        actor=contoso.finance,
        idempotency_key=key(),
    )
    assert attempt.status == PaymentAttempt.Status.UNKNOWN
    attempt = services.attempt_reconcile(attempt_id=attempt.pk)
    assert attempt.status == PaymentAttempt.Status.CANCELED
    assert not SimCharge.objects.exists()
    settings.SIMULATED_GATEWAY_UNREACHABLE_CARDS = []
    again = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=contoso.invoices["teams"].pk,
        payment_method_id=contoso.mastercard.pk,
        actor=contoso.finance,
        idempotency_key=key(),
    )
    assert again.status == PaymentAttempt.Status.SUCCEEDED


def test_reconcile_backs_off_while_the_gateway_stays_silent(contoso, monkeypatch):
    from payments.gateways.base import ChargeResult
    from payments.gateways.simulated import SimulatedGateway

    monkeypatch.setattr(SimulatedGateway, "charge", lambda self, **kw: ChargeResult.unknown("timeout"))
    monkeypatch.setattr(SimulatedGateway, "lookup", lambda self, **kw: ChargeResult.unknown("timeout"))
    attempt = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=contoso.invoices["teams"].pk,
        payment_method_id=contoso.mastercard.pk,
        actor=contoso.finance,
        idempotency_key=key(),
    )
    steps = []
    for _ in range(5):
        before = attempt.reconcile_after
        attempt = services.attempt_reconcile(attempt_id=attempt.pk)
        steps.append(attempt.reconcile_count)
        assert attempt.reconcile_after is not None
        assert before is not None
        assert attempt.reconcile_after > before
    assert steps == [1, 2, 3, 4, 5]
    assert attempt.status == PaymentAttempt.Status.UNKNOWN


def test_late_decline_after_success_does_not_undo_it(contoso):
    from payments.gateways.base import ChargeResult

    attempt = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=contoso.invoices["teams"].pk,
        payment_method_id=contoso.mastercard.pk,
        actor=contoso.finance,
        idempotency_key=key(),
    )
    again = services.attempt_apply_result(
        attempt_id=attempt.pk, result=ChargeResult.declined("card_declined")
    )
    assert again.status == PaymentAttempt.Status.SUCCEEDED
    assert Invoice.objects.get(pk=contoso.invoices["teams"].pk).status == Invoice.Status.PAID


def test_non_owner_cannot_edit_expiry(contoso):
    with pytest.raises(services.NotCardOwner):
        services.payment_method_update_expiry(
            account_id=contoso.account.pk,
            method_id=contoso.visa.pk,
            actor=contoso.finance,
            exp_month=1,
            exp_year=2031,
        )
    assert PaymentMethod.objects.get(pk=contoso.visa.pk).exp_year == 2030


def test_owner_fixes_expired_card_and_the_same_card_pays(contoso):
    expired = card(
        account=contoso.account,
        number="4012888888881881",
        owner=contoso.admin,
        exp_month=10,
        exp_year=2020,
        status=PaymentMethod.Status.DECLINED,
        decline_code="expired_card",
    )
    _sub, _invoice = subscription(
        account=contoso.account,
        name="Basic",
        quantity=12,
        unit_price_minor=600,
        method=expired,
        past_due=True,
    )
    failed = services.balance_settle(
        account_id=contoso.account.pk,
        failed_method_id=expired.pk,
        chosen_method_id=expired.pk,
        actor=contoso.admin,
        idempotency_key=key(),
    )
    assert failed.decline_code == "expired_card"
    method = services.payment_method_update_expiry(
        account_id=contoso.account.pk, method_id=expired.pk, actor=contoso.admin, exp_month=10, exp_year=2029
    )
    assert method.status == PaymentMethod.Status.VALID
    paid = services.balance_settle(
        account_id=contoso.account.pk,
        failed_method_id=expired.pk,
        chosen_method_id=expired.pk,
        actor=contoso.admin,
        idempotency_key=key(),
    )
    assert paid.status == PaymentAttempt.Status.SUCCEEDED
    assert paid.amount_minor == 7200


@pytest.mark.parametrize(
    ("month", "year", "field"),
    [
        ("13", "2030", "exp_month"),
        ("0", "2030", "exp_month"),
        ("1", "2020", "exp_month"),
        ("x", "2030", "exp_month"),
    ],
)
def test_bad_expiry_is_refused_with_a_message(contoso, month, year, field):
    with pytest.raises(services.InvalidCardInput) as exc:
        services.payment_method_update_expiry(
            account_id=contoso.account.pk,
            method_id=contoso.visa.pk,
            actor=contoso.admin,
            exp_month=month,
            exp_year=year,
        )
    assert field in exc.value.errors
    assert PaymentMethod.objects.get(pk=contoso.visa.pk).exp_year == 2030


def test_add_card_refuses_a_number_failing_luhn(contoso):
    with pytest.raises(services.InvalidCardInput) as exc:
        services.payment_method_add(
            account_id=contoso.account.pk,
            actor=contoso.finance,
            number="4242 4242 4242 4241",
            exp_month=12,
            exp_year=2031,
            cvc="123",
        )
    assert "not valid" in exc.value.errors["number"]
    assert PaymentMethod.objects.filter(account=contoso.account).count() == 2


def test_add_card_stores_only_brand_last4_and_token(contoso):
    method = services.payment_method_add(
        account_id=contoso.account.pk,
        actor=contoso.finance,
        number="4242 4242 4242 4242",
        exp_month=12,
        exp_year=2031,
        cvc="123",
        holder_name="Fin Ance",
    )
    assert (method.brand, method.last4, method.owner) == ("visa", "4242", contoso.finance)
    assert method.gateway_token.startswith("sim_card_")
    assert "4242424242424242" not in str(PaymentMethod.objects.filter(pk=method.pk).values().get())


def test_add_card_declined_on_attach(contoso):
    with pytest.raises(services.InvalidCardInput) as exc:
        services.payment_method_add(
            account_id=contoso.account.pk,
            actor=contoso.finance,
            number="4000000000009979",
            exp_month=12,
            exp_year=2031,
            cvc="123",
        )
    assert "declined" in exc.value.errors["number"]


def test_other_accounts_method_cannot_be_charged(contoso):
    from tests.payments.scenario import build_contoso

    other = build_contoso(prefix="other-")
    with pytest.raises(services.PaymentError):
        services.invoice_pay(
            account_id=contoso.account.pk,
            invoice_id=contoso.invoices["teams"].pk,
            payment_method_id=other.mastercard.pk,
            actor=contoso.finance,
            idempotency_key=key(),
        )
    assert not SimCharge.objects.exists()


def test_sweeps_reconcile_lost_attempts_and_cancel_stale_challenges(contoso, settings):
    import datetime as dt

    from django.utils import timezone

    from payments.tasks import attempts_abandon_stale, attempts_reconcile_due

    settings.SIMULATED_GATEWAY_TIMEOUT_CARDS = ["5555555555554444"]
    lost = services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=contoso.invoices["teams"].pk,
        payment_method_id=contoso.mastercard.pk,
        actor=contoso.finance,
        idempotency_key=key(),
    )
    assert attempts_reconcile_due() == 0  # not due for 15 s
    PaymentAttempt.objects.filter(pk=lost.pk).update(reconcile_after=timezone.now())
    assert attempts_reconcile_due() == 1
    lost.refresh_from_db()
    assert lost.status == PaymentAttempt.Status.SUCCEEDED

    _sca, stale = _three_ds_settle(contoso)
    PaymentAttempt.objects.filter(pk=stale.pk).update(created_at=timezone.now() - dt.timedelta(days=2))
    assert attempts_abandon_stale() == 1
    stale.refresh_from_db()
    assert stale.status == PaymentAttempt.Status.CANCELED


def test_an_idempotency_key_of_another_account_is_refused(contoso):
    from tests.payments.scenario import build_contoso

    k = key()
    services.invoice_pay(
        account_id=contoso.account.pk,
        invoice_id=contoso.invoices["teams"].pk,
        payment_method_id=contoso.mastercard.pk,
        actor=contoso.finance,
        idempotency_key=k,
    )
    other = build_contoso(prefix="o-")
    with pytest.raises(services.PaymentError):
        services.invoice_pay(
            account_id=other.account.pk,
            invoice_id=other.invoices["teams"].pk,
            payment_method_id=other.mastercard.pk,
            actor=other.finance,
            idempotency_key=k,
        )
    assert SimCharge.objects.count() == 1
