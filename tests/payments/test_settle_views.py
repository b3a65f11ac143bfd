"""The Settle balance and Pay now panes: roles, scoping, bad input, double submit, query counts."""

import re
import uuid

import pytest
from django.urls import reverse

from gateway_sim.models import SimCharge
from payments.gateways.base import decline_message
from payments.models import PaymentAttempt, PaymentMethod
from subscriptions.models import Invoice, Subscription
from tests.payments.scenario import build_contoso, subscription

pytestmark = pytest.mark.django_db


def settle_url(c, method=None):
    return reverse("payments:settle", args=[c.account.pk, (method or c.visa).pk])


def post_settle(client, c, headers=None, **data):
    payload = {"form_key": str(uuid.uuid4()), "method": str(c.mastercard.pk), "shown_total_minor": "39050"}
    payload.update(data)
    return client.post(settle_url(c), payload, headers=headers or {})


def test_pane_shows_failed_method_invoices_and_total(client, contoso):
    client.force_login(contoso.admin)
    response = client.get(settle_url(contoso) + f"?method={contoso.mastercard.pk}")
    body = response.content.decode()
    assert response.status_code == 200
    assert "Visa ending 0341" in body
    for inv in ("m365", "exchange", "powerbi", "visio"):
        assert contoso.invoices[inv].number in body
    assert "€376.50" in body
    assert "€14.00" in body
    assert "€390.50" in body
    assert "Past-due charges of Mastercard ending 4444" in body


def test_pane_with_current_method_totals_only_the_failed_cards_balance(client, contoso):
    client.force_login(contoso.admin)
    body = client.get(settle_url(contoso) + f"?method={contoso.visa.pk}").content.decode()
    assert 'id="settle-total">€376.50' in body
    assert contoso.invoices["visio"].number not in body


def test_pane_preselects_a_working_card_never_the_declined_one(client, contoso):
    """Pressing the primary button right away must not charge the card that was just declined."""
    client.force_login(contoso.admin)
    body = client.get(settle_url(contoso)).content.decode()
    checked = re.findall(r'name="method" value="(\w+)" checked', body)
    assert checked == [str(contoso.mastercard.pk)]
    assert 'id="settle-total">€390.50' in body  # the Mastercard's own €14 is added and shown


def test_pane_selects_nothing_when_no_card_works(client, contoso):
    PaymentMethod.objects.filter(pk=contoso.mastercard.pk).update(status=PaymentMethod.Status.DECLINED)
    client.force_login(contoso.admin)
    body = client.get(settle_url(contoso)).content.decode()
    assert re.findall(r'name="method" value="(\w+)" checked', body) == []


def test_htmx_get_renders_only_the_pane(client, contoso):
    client.force_login(contoso.admin)
    body = client.get(settle_url(contoso), headers={"HX-Request": "true"}).content.decode()
    assert body.lstrip().startswith('<section class="pane')
    assert "<html" not in body


def test_owner_sees_expiry_fields_others_do_not(client, contoso):
    client.force_login(contoso.admin)
    assert "Update the expiry date" in client.get(settle_url(contoso)).content.decode()
    client.force_login(contoso.finance)
    assert "Update the expiry date" not in client.get(settle_url(contoso)).content.decode()


def test_server_refuses_expiry_change_from_non_owner(client, contoso):
    client.force_login(contoso.finance)
    url = reverse("payments:settle_expiry", args=[contoso.account.pk, contoso.visa.pk])
    response = client.post(url, {"exp_month": "1", "exp_year": "2031"})
    assert response.status_code == 403
    assert PaymentMethod.objects.get(pk=contoso.visa.pk).exp_year == 2030


def test_owner_changes_expiry_in_the_pane(client, contoso):
    client.force_login(contoso.admin)
    url = reverse("payments:settle_expiry", args=[contoso.account.pk, contoso.visa.pk])
    response = client.post(url, {"exp_month": "3", "exp_year": "2031"})
    assert "is now 03/2031" in response.content.decode()
    method = PaymentMethod.objects.get(pk=contoso.visa.pk)
    # The Visa was declined with card_declined, not for its expiry: a new date does not clear that.
    assert (method.exp_month, method.exp_year, method.status) == (3, 2031, "declined")
    assert method.last_decline_code == "card_declined"


def test_new_expiry_clears_an_expired_card_decline(client, contoso):
    PaymentMethod.objects.filter(pk=contoso.visa.pk).update(last_decline_code="expired_card")
    client.force_login(contoso.admin)
    url = reverse("payments:settle_expiry", args=[contoso.account.pk, contoso.visa.pk])
    client.post(url, {"exp_month": "3", "exp_year": "2031"})
    method = PaymentMethod.objects.get(pk=contoso.visa.pk)
    assert (method.status, method.last_decline_code) == ("valid", "")


@pytest.mark.parametrize(
    ("month", "year", "message"),
    [("13", "2031", "1 to 12"), ("1", "2020", "in the past"), ("", "2031", "Enter the new expiry")],
)
def test_bad_expiry_gets_a_message_and_changes_nothing(client, contoso, month, year, message):
    client.force_login(contoso.admin)
    url = reverse("payments:settle_expiry", args=[contoso.account.pk, contoso.visa.pk])
    response = client.post(url, {"exp_month": month, "exp_year": year})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert PaymentMethod.objects.get(pk=contoso.visa.pk).exp_year == 2030


def test_settle_post_pays_and_tells_the_page(client, contoso):
    client.force_login(contoso.admin)
    response = post_settle(client, contoso, amount="1", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert "balanceChanged" in response["HX-Trigger"]
    assert "Payment received" in body
    attempt = PaymentAttempt.objects.get(status=PaymentAttempt.Status.SUCCEEDED)
    assert attempt.reference in body
    # The tampered amount field was ignored: the server charged what it computed.
    assert attempt.amount_minor == 39050
    assert SimCharge.objects.get().amount_minor == 39050
    assert Subscription.objects.filter(payment_method=contoso.mastercard).count() == 5


def test_changed_shown_total_is_shown_again_not_charged(client, contoso):
    client.force_login(contoso.admin)
    response = post_settle(client, contoso, shown_total_minor="37650")
    assert "The total is €390.50" in response.content.decode()
    assert not SimCharge.objects.exists()


def test_double_submit_with_the_same_form_key_charges_once(client, contoso):
    client.force_login(contoso.admin)
    key = str(uuid.uuid4())
    first = post_settle(client, contoso, form_key=key)
    second = post_settle(client, contoso, form_key=key)
    assert first.status_code == second.status_code == 200
    assert "Payment received" in second.content.decode()
    assert SimCharge.objects.count() == 1
    assert PaymentAttempt.objects.count() == 1


def test_decline_says_why_and_keeps_the_pane(client, contoso):
    client.force_login(contoso.admin)
    response = post_settle(client, contoso, method=str(contoso.visa.pk), shown_total_minor="37650")
    body = response.content.decode()
    assert "Your bank declined the payment" in body
    assert 'id="settle-form"' in body
    assert Invoice.objects.filter(status=Invoice.Status.PAID).count() == 0


def test_empty_choice_gets_a_message(client, contoso):
    client.force_login(contoso.admin)
    response = post_settle(client, contoso, method="")
    assert "Choose a payment method" in response.content.decode()
    assert not PaymentAttempt.objects.exists()


def test_new_card_failing_luhn_gets_a_message(client, contoso):
    client.force_login(contoso.finance)
    response = post_settle(
        client, contoso, method="new", number="4242424242424241", exp_month="12", exp_year="2031", cvc="123"
    )
    assert "This card number is not valid" in response.content.decode()
    assert PaymentMethod.objects.count() == 2
    assert not PaymentAttempt.objects.exists()


def test_finance_adds_a_card_and_settles_the_visa_balance(client, contoso):
    client.force_login(contoso.finance)
    response = post_settle(
        client,
        contoso,
        method="new",
        number="4242 4242 4242 4242",
        exp_month="12",
        exp_year="2031",
        cvc="123",
        shown_total_minor="37650",
    )
    assert "Payment received" in response.content.decode()
    new = PaymentMethod.objects.get(last4="4242")
    assert new.owner == contoso.finance
    attempt = PaymentAttempt.objects.get()
    assert attempt.amount_minor == 37650
    assert Subscription.objects.filter(payment_method=new).count() == 3


def test_reader_sees_no_pay_action_and_is_refused(client, contoso):
    client.force_login(contoso.reader)
    body = client.get(settle_url(contoso)).content.decode()
    assert 'id="settle-form"' not in body
    assert "Settle balance</button>" not in body
    assert post_settle(client, contoso).status_code == 403
    pay_url = reverse("payments:invoice_pay", args=[contoso.account.pk, contoso.invoices["teams"].number])
    assert 'id="pay-form"' not in client.get(pay_url).content.decode()
    assert (
        client.post(pay_url, {"form_key": str(uuid.uuid4()), "method": contoso.mastercard.pk}).status_code
        == 403
    )
    assert not SimCharge.objects.exists()


def test_other_accounts_ids_are_404(client, contoso):
    other = build_contoso(prefix="other-")
    client.force_login(contoso.admin)
    # Another account's URL, another account's method in our URL, another account's invoice number.
    assert client.get(reverse("payments:settle", args=[other.account.pk, other.visa.pk])).status_code == 404
    assert client.get(reverse("payments:settle", args=[contoso.account.pk, other.visa.pk])).status_code == 404
    pay_other = reverse("payments:invoice_pay", args=[contoso.account.pk, other.invoices["teams"].number])
    assert client.get(pay_other).status_code == 404
    response = post_settle(client, contoso, method=str(other.mastercard.pk))
    assert response.status_code == 404
    assert not SimCharge.objects.exists()


def test_pay_now_pays_the_invoice(client, contoso):
    client.force_login(contoso.finance)
    url = reverse("payments:invoice_pay", args=[contoso.account.pk, contoso.invoices["teams"].number])
    body = client.get(url).content.decode()
    assert "€36.00" in body
    response = client.post(url, {"form_key": str(uuid.uuid4()), "method": contoso.mastercard.pk})
    assert "Payment received" in response.content.decode()
    assert Invoice.objects.get(pk=contoso.invoices["teams"].pk).status == Invoice.Status.PAID


def test_3ds_redirects_to_the_challenge_and_back(client, contoso):
    from tests.payments.scenario import card

    sca = card(account=contoso.account, number="4000002500003155", owner=contoso.admin)
    client.force_login(contoso.admin)
    response = client.post(
        settle_url(contoso),
        {"form_key": str(uuid.uuid4()), "method": str(sca.pk), "shown_total_minor": "37650"},
        headers={"HX-Request": "true"},
    )
    challenge = response["HX-Redirect"]
    assert challenge.startswith("/gateway/simulated/3ds/")
    page = client.get(challenge).content.decode()
    assert "Complete authentication" in page
    assert "Fail authentication" in page
    back = client.post(challenge, {"decision": "complete"})
    assert back.status_code == 302
    receipt = client.get(back["Location"], follow=True)
    assert "Payment received" in receipt.content.decode()
    assert Invoice.objects.filter(status=Invoice.Status.PAID).count() == 3


def test_the_banks_3ds_page_speaks_the_accounts_language_not_the_browsers(client, contoso):
    """A Dutch account paying from an English browser gets the bank's page in Dutch: the language travels
    with the charge (as a 3-D Secure request carries the cardholder's), not with Accept-Language."""
    from tests.payments.scenario import card

    contoso.account.language = "nl"
    contoso.account.save(update_fields=["language"])
    sca = card(account=contoso.account, number="4000002500003155", owner=contoso.admin)
    client.force_login(contoso.admin)
    response = client.post(
        settle_url(contoso),
        {"form_key": str(uuid.uuid4()), "method": str(sca.pk), "shown_total_minor": "37650"},
        headers={"HX-Request": "true"},
    )
    challenge = response["HX-Redirect"]
    assert SimCharge.objects.get(reference=challenge.rstrip("/").rsplit("/", 1)[1]).language == "nl"
    page = client.get(challenge, headers={"Accept-Language": "en"}).content.decode()
    assert '<html lang="nl">' in page
    assert "Bevestig uw betaling" in page
    assert "Confirm your payment" not in page
    assert "€\u00a0376,50" in page or "€ 376,50" in page
    failed = client.post(challenge, {"decision": "fail"}, headers={"Accept-Language": "en"})
    assert failed.status_code == 302  # back to the portal, which speaks the account's language too


@pytest.mark.parametrize("extra_subscriptions", [0, 199])
def test_pane_query_count_is_flat(client, contoso, django_assert_num_queries, extra_subscriptions):
    for i in range(extra_subscriptions):
        subscription(
            account=contoso.account,
            name=f"Extra {i}",
            quantity=1,
            unit_price_minor=100,
            method=contoso.visa,
            past_due=True,
        )
    client.force_login(contoso.admin)
    url = settle_url(contoso) + f"?method={contoso.mastercard.pk}"
    client.get(url)  # warm the session
    with django_assert_num_queries(PANE_QUERIES):
        response = client.get(url)
    assert response.status_code == 200


# session, user, membership, the failed + chosen + usable cards (one query), both invoice lists with
# their totals and whether a payment is in flight for them (one query), + the shell's account switcher;
# + which payments are in flight, when one is
PANE_QUERIES = 6


def test_pane_lists_the_first_invoices_and_counts_the_rest(client, contoso):
    """1,000 past-due invoices do not make a 1,000-row pane: the first SETTLE_INVOICES_LISTED of each
    card, "and N more" with a link to them, and totals summed over all of them."""
    from payments.selectors import SETTLE_INVOICES_LISTED, settle_preview, settle_quote

    extra = SETTLE_INVOICES_LISTED + 7
    for i in range(extra):
        subscription(
            account=contoso.account,
            name=f"Extra {i:03d}",
            quantity=1,
            unit_price_minor=100,
            method=contoso.visa,
            past_due=True,
        )
    quote = settle_quote(
        account=contoso.account, failed_method=contoso.visa, chosen_method=contoso.mastercard
    )
    preview = settle_preview(
        account=contoso.account, failed_method=contoso.visa, chosen_method=contoso.mastercard
    )
    assert preview.total == quote.total
    assert preview.failed_total == quote.failed_total
    assert preview.chosen_method_total == quote.chosen_method_total
    assert preview.failed_count == len(quote.invoices)
    assert len(preview.invoices) == SETTLE_INVOICES_LISTED
    assert [i.pk for i in preview.invoices] == [i.pk for i in quote.invoices[:SETTLE_INVOICES_LISTED]]
    assert preview.chosen_method_count == len(quote.chosen_method_invoices)
    more = len(quote.invoices) - SETTLE_INVOICES_LISTED

    client.force_login(contoso.admin)
    body = client.get(settle_url(contoso) + f"?method={contoso.mastercard.pk}").content.decode()
    assert f"and {more} more past-due invoices, included in the subtotal." in body
    assert reverse("subscriptions:invoices", args=[contoso.account.pk]) + "?status=past_due" in body
    assert f'name="shown_total_minor" value="{quote.total.amount_minor}"' in body
    assert quote.invoices[SETTLE_INVOICES_LISTED].number not in body


def test_without_javascript_3ds_is_a_plain_redirect_chain(client, contoso):
    from tests.payments.scenario import card

    sca = card(account=contoso.account, number="4000002500003155", owner=contoso.admin)
    client.force_login(contoso.admin)
    response = client.post(
        settle_url(contoso),
        {"form_key": str(uuid.uuid4()), "method": str(sca.pk), "shown_total_minor": "37650"},
    )
    assert response.status_code == 303
    back = client.post(response["Location"], {"decision": "fail"})
    page = client.get(back["Location"], follow=True)
    body = page.content.decode()
    assert body.lower().count("nothing was paid") == 1  # said once, not twice
    assert "Try again" in body
    assert Invoice.objects.filter(status=Invoice.Status.PAID).count() == 0
    assert PaymentAttempt.objects.get().decline_code == "authentication_failed"


def test_attempt_pages_of_another_account_are_404(client, contoso):
    other = build_contoso(prefix="other-")
    client.force_login(other.admin)
    attempt = PaymentAttempt.objects.create(
        account=contoso.account,
        payment_method=contoso.mastercard,
        amount_minor=100,
        currency="EUR",
        source="pay_now",
        idempotency_key="x",
    )
    assert (
        client.get(reverse("payments:attempt_detail", args=[other.account.pk, attempt.pk])).status_code == 404
    )
    url = reverse("payments:attempt_return", args=[other.account.pk]) + f"?attempt={attempt.pk}"
    assert client.get(url).status_code == 404


def test_pane_says_when_a_payment_is_being_checked(client, contoso, settings, django_assert_num_queries):
    settings.SIMULATED_GATEWAY_TIMEOUT_CARDS = ["5555555555554444"]
    client.force_login(contoso.admin)
    post_settle(client, contoso)
    body = client.get(settle_url(contoso) + f"?method={contoso.mastercard.pk}").content.decode()
    assert "is being checked with the bank" in body
    with django_assert_num_queries(PANE_QUERIES + 1):  # the preview says one is in flight: which one
        client.get(settle_url(contoso) + f"?method={contoso.mastercard.pk}")
    again = post_settle(client, contoso)
    assert "already in progress" in again.content.decode()
    assert SimCharge.objects.count() == 1


def test_a_reader_sees_a_waiting_payment_but_not_the_link_to_confirm_it(client, contoso):
    from tests.payments.scenario import card

    sca = card(account=contoso.account, number="4000002500003155", owner=contoso.admin)
    client.force_login(contoso.admin)
    client.post(
        settle_url(contoso),
        {"form_key": str(uuid.uuid4()), "method": str(sca.pk), "shown_total_minor": "37650"},
    )
    attempt = PaymentAttempt.objects.get(status=PaymentAttempt.Status.REQUIRES_ACTION)
    detail = reverse("payments:attempt_detail", args=[contoso.account.pk, attempt.pk])
    assert attempt.action_url in client.get(detail).content.decode()
    client.force_login(contoso.reader)
    page = client.get(detail).content.decode()
    assert "waiting for you to confirm" in page
    assert attempt.action_url not in page


def test_pay_now_charges_nothing_when_the_amount_changed_since_the_pane_was_shown(client, contoso):
    client.force_login(contoso.finance)
    invoice = contoso.invoices["teams"]
    url = reverse("payments:invoice_pay", args=[contoso.account.pk, invoice.number])
    assert 'name="shown_total_minor" value="3600"' in client.get(url).content.decode()
    # A part payment arrived meanwhile: the customer saw €36.00, €26.00 is due now.
    Invoice.objects.filter(pk=invoice.pk).update(amount_due_minor=2600)
    response = client.post(
        url, {"form_key": str(uuid.uuid4()), "method": contoso.mastercard.pk, "shown_total_minor": "3600"}
    )
    assert "amount due changed" in response.content.decode()
    assert not SimCharge.objects.exists()
    assert Invoice.objects.get(pk=invoice.pk).amount_due_minor == 2600


def test_after_a_new_card_error_the_total_is_the_declined_cards_and_paying_works(client, contoso):
    """Under "Add a new card" no saved card's own charges are added: the shown total stays consistent."""
    client.force_login(contoso.admin)
    bad = client.post(
        settle_url(contoso),
        {
            "form_key": str(uuid.uuid4()),
            "method": "new",
            "number": "4242424242424241",
            "exp_month": "12",
            "exp_year": "2031",
            "cvc": "123",
            "shown_total_minor": "37650",
        },
    ).content.decode()
    assert 'id="settle-total">€376.50' in bad
    assert re.findall(r'name="method" value="(\w+)" checked', bad) == ["new"]
    assert 'value="12"' in bad  # the typed month is kept
    assert "4242424242424241" not in bad  # the number never is


def test_failed_payment_pane_says_why_from_the_code_even_without_a_stored_message(client, contoso):
    # Seeded and job-recorded declines carry a code; the sentence is said again in the reader's language.
    attempt = PaymentAttempt.objects.create(
        account=contoso.account,
        payment_method=contoso.mastercard,
        amount_minor=100,
        currency="EUR",
        source="retry",
        status=PaymentAttempt.Status.FAILED,
        decline_code="insufficient_funds",
        idempotency_key="seeded-1",
    )
    client.force_login(contoso.admin)
    body = client.get(
        reverse("payments:attempt_detail", args=[contoso.account.pk, attempt.pk])
    ).content.decode()
    assert str(decline_message("insufficient_funds")) in body
    assert "Nothing was paid." in body
