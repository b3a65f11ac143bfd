"""Twenty settle requests for the same balance at once make exactly one charge (PostgreSQL row locks)."""

import threading
import time
import uuid

import pytest
from django.db import connection, connections

from gateway_sim.models import SimCharge
from payments import services
from payments.models import PaymentAttempt
from subscriptions.models import Invoice
from tests.payments.scenario import build_contoso

CONCURRENT = 20


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_settles_charge_once():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks (SELECT … FOR UPDATE); SQLite serialises writers instead")
    contoso = build_contoso()
    barrier = threading.Barrier(CONCURRENT)
    outcomes: list[str] = []
    lock = threading.Lock()

    def settle() -> None:
        try:
            barrier.wait()
            attempt = services.balance_settle(
                account_id=contoso.account.pk,
                failed_method_id=contoso.visa.pk,
                chosen_method_id=contoso.mastercard.pk,
                actor=contoso.admin,
                idempotency_key=str(uuid.uuid4()),
            )
            result = attempt.status
        except services.PaymentError as exc:
            result = type(exc).__name__
        except Exception as exc:
            result = f"{type(exc).__name__}: {exc}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=settle) for _ in range(CONCURRENT)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started

    print(f"\n{CONCURRENT} concurrent settles in {elapsed:.2f}s: {sorted(outcomes)}")
    assert len(outcomes) == CONCURRENT
    assert SimCharge.objects.count() == 1
    assert PaymentAttempt.objects.filter(status=PaymentAttempt.Status.SUCCEEDED).count() == 1
    assert PaymentAttempt.objects.count() == 1
    assert outcomes.count("succeeded") == 1
    assert set(outcomes) <= {"succeeded", "PaymentInProgress", "NothingToPay"}
    assert Invoice.objects.filter(status=Invoice.Status.PAID).count() == 4


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_http_posts_of_the_pane_charge_once(live_server):
    """The same through the web stack: twenty tabs post Settle balance at once to a threaded server."""
    import http.cookiejar
    import re
    import urllib.parse
    import urllib.request

    from django.conf import settings
    from django.test import Client

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks (SELECT … FOR UPDATE); SQLite serialises writers instead")
    contoso = build_contoso()
    client = Client()
    client.force_login(contoso.admin)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    url = f"{live_server.url}/a/{contoso.account.pk}/billing/settle/{contoso.visa.pk}/?method={contoso.mastercard.pk}"

    def opener():
        jar = http.cookiejar.CookieJar()
        o = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        o.addheaders = [("Cookie", f"{settings.SESSION_COOKIE_NAME}={session}")]
        return o, jar

    forms = []
    for _ in range(CONCURRENT):  # each tab renders its own pane (own form key and CSRF token)
        o, jar = opener()
        page = o.open(url).read().decode()
        token_match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        key_match = re.search(r'name="form_key" value="([^"]+)"', page)
        assert token_match is not None
        assert key_match is not None
        token, form_key = token_match[1], key_match[1]
        csrf_cookie = next(c.value for c in jar if c.name == settings.CSRF_COOKIE_NAME)
        forms.append((token, form_key, csrf_cookie))
    barrier = threading.Barrier(CONCURRENT)
    statuses: list[int] = []

    def post(token: str, form_key: str, csrf_cookie: str) -> None:
        body = urllib.parse.urlencode(
            {
                "csrfmiddlewaretoken": token,
                "form_key": form_key,
                "method": contoso.mastercard.pk,
                "shown_total_minor": 39050,
            }
        ).encode()
        request = urllib.request.Request(url.split("?")[0], data=body, method="POST")
        request.add_header(
            "Cookie", f"{settings.SESSION_COOKIE_NAME}={session}; {settings.CSRF_COOKIE_NAME}={csrf_cookie}"
        )
        request.add_header("Referer", live_server.url)
        barrier.wait()
        with urllib.request.urlopen(request) as response:
            statuses.append(response.status)

    threads = [threading.Thread(target=post, args=f) for f in forms]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    print(f"\n{CONCURRENT} concurrent HTTP settles in {elapsed:.2f}s: statuses {sorted(set(statuses))}")
    assert statuses == [200] * CONCURRENT
    assert SimCharge.objects.count() == 1
    assert PaymentAttempt.objects.filter(status=PaymentAttempt.Status.SUCCEEDED).count() == 1
    assert Invoice.objects.filter(status=Invoice.Status.PAID).count() == 4
